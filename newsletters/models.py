"""Issues, their deliveries, the analyses they carry, and the record of every daily run."""

import uuid

from django.db import models

from markets.models import Ticker
from subscriptions.models import Subscriber


class Issue(models.Model):
    """One newsletter edition: the market session it reports on."""

    date = models.DateField(unique=True)
    demo = models.BooleanField(default=False, help_text="Built from DEMO DATA.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date"]

    def __str__(self) -> str:
        return f"Issue {self.date.isoformat()}"


class Delivery(models.Model):
    """One subscriber's copy of one issue; its status makes every send safe to run twice."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        #: Taken by a run to compose, not yet handed over: a crash leaves it pending for the next run, not ambiguous.
        CLAIMED = "claimed", "Claimed"
        #: Handed (or about to be handed) to the email backend, outcome not yet recorded: ambiguous after a crash.
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    class Feedback(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        SOFT_BOUNCE = "soft_bounce", "Soft bounce"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complaint"

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="deliveries")
    subscriber = models.ForeignKey(Subscriber, on_delete=models.SET_NULL, null=True, related_name="deliveries")
    #: Opaque id used in archive keys and view-in-browser links; never the address.
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    email = models.EmailField(blank=True, help_text="The address it was sent to.")
    symbols = models.JSONField(default=list, blank=True, help_text="The tickers the email covered.")
    message_id = models.CharField(max_length=255, blank=True)
    archive_key = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    retryable = models.BooleanField(default=True, help_text="A failed delivery a rerun may try again.")
    #: What SES reported after it accepted the message (its events, matched by the delivery tag or message id).
    feedback = models.CharField(max_length=16, choices=Feedback.choices, blank=True, db_index=True)
    feedback_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-issue__date", "id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["issue", "subscriber"], name="delivery_one_per_issue_subscriber")
        ]
        indexes = [
            # The claim reads the next sendable rows of an issue in id order: through this index a claim costs its
            # batch, not every row already sent before it, with or without fresh statistics (bench/claim_plan.py).
            models.Index(
                fields=["issue", "id"],
                condition=models.Q(status__in=["pending", "failed"]),
                name="delivery_sendable_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.issue.date} → {self.email or self.subscriber_id}"


class Analysis(models.Model):
    """The analysis of one ticker for one session by one model and prompt version (the cache key)."""

    class Stance(models.TextChoices):
        BULLISH = "bullish", "Bullish"
        NEUTRAL = "neutral", "Neutral"
        BEARISH = "bearish", "Bearish"

    ticker = models.ForeignKey(Ticker, on_delete=models.CASCADE, related_name="analyses")
    date = models.DateField()
    model = models.CharField(max_length=120)
    prompt_version = models.CharField(max_length=40)
    headline = models.CharField(max_length=200)
    phrase = models.CharField(
        max_length=40, blank=True, help_text="The short phrase the email's headline and subject are built from."
    )
    summary = models.TextField()
    stance = models.CharField(max_length=10, choices=Stance.choices)
    score = models.PositiveSmallIntegerField()
    points = models.JSONField(default=list, blank=True)
    risks = models.JSONField(default=list, blank=True)
    automated = models.BooleanField(default=False, help_text="Written by the rule-based analyst.")
    fallback_reason = models.TextField(blank=True, help_text="Why the model's answer was not used.")
    data_as_of = models.DateField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="When the shared tables took it; empty: the next run offers it."
    )

    class Meta:
        ordering = ["-date", "ticker__symbol"]
        verbose_name_plural = "analyses"
        constraints = [
            models.UniqueConstraint(fields=["ticker", "date", "model", "prompt_version"], name="analysis_cache_key")
        ]

    def __str__(self) -> str:
        return f"{self.ticker_id} {self.date} {self.stance} {self.score}"


class AnalystCall(models.Model):
    """One exchange with a language model, kept for audit: the exact prompt, the raw reply and what became of it."""

    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="calls")
    response_format = models.CharField(max_length=20, blank=True)
    messages = models.JSONField(default=list, help_text="The exact messages sent.")
    raw_reply = models.TextField(blank=True, help_text="The reply as received, or the error body.")
    status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="HTTP status; empty on a timeout.")
    outcome = models.CharField(max_length=20, help_text="ok, invalid, format refused, retried, refused, error.")
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["analysis", "id"]

    def __str__(self) -> str:
        return f"{self.analysis_id} {self.outcome}"


class DailyRun(models.Model):
    """One run of the daily job: what each stage did, how long it took, and what went wrong."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Partial (some items failed)"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (no session)"
        #: Stopped by a signal (SIGTERM, SIGINT) or killed: what was in flight is recorded, the rest left for a rerun.
        INTERRUPTED = "interrupted", "Interrupted"

    date = models.DateField(db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    dry_run = models.BooleanField(default=False)
    stages = models.CharField(max_length=64, default="data,analysis,delivery")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    tickers_updated = models.PositiveIntegerField(default=0)
    tickers_stale = models.PositiveIntegerField(default=0)
    tickers_failed = models.PositiveIntegerField(default=0)
    analyses_created = models.PositiveIntegerField(default=0)
    analyses_cached = models.PositiveIntegerField(default=0)
    analyses_fallback = models.PositiveIntegerField(default=0)
    emails_sent = models.PositiveIntegerField(default=0)
    emails_failed = models.PositiveIntegerField(default=0)
    emails_skipped = models.PositiveIntegerField(default=0)
    emails_would_send = models.PositiveIntegerField(
        default=0, help_text="A dry run's count: what a real run would send."
    )
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    estimated_cost_usd = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    durations = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")
    errors = models.JSONField(default=dict, blank=True, help_text="Per stage, what failed and why.")
    notes = models.JSONField(
        default=dict,
        blank=True,
        help_text="What was left out on purpose and why (a plan without earnings): no failure.",
    )
    summary = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Run {self.date} {self.status}"


class SendJob(models.Model):
    """One "send me the latest issue now" request, from the page, the admin or send_newsletter: the page polls it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RENDERING = "rendering", "Rendering"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    UNFINISHED = (Status.QUEUED, Status.RENDERING)

    #: The job's address in the status page and its JSON endpoint: unguessable, and no personal data.
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="send_jobs")
    day = models.DateField(help_text="The session whose issue is sent.")
    again = models.BooleanField(default=False, help_text="Asked for a second copy of an issue already received.")
    source = models.CharField(max_length=16, default="page", help_text="page, admin or command.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    reason = models.TextField(blank=True, help_text="Why it failed, or how it was sent.")
    delivery = models.ForeignKey(Delivery, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Send job {self.token} {self.status}"
