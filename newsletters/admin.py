from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from walter_site.admin_records import RecordAdmin, seconds_table

from .dead_letters import DeadLetterError, dead_letters_requeue
from .jobs import send_job_create
from .links import view_token
from .models import Analysis, AnalystCall, DailyRun, Delivery, Issue, SendJob
from .services import NothingToSend, deliveries_resend, preview_send

# Staff actions send synchronously from the request: keep each one small.
RESEND_LIMIT = 200
TEST_COPY_LIMIT = 10
# Characters of a failure reason shown in the list; the whole reason is in the tooltip and on the record.
FAILURE_SHOWN = 60


@admin.register(Issue)
class IssueAdmin(RecordAdmin):
    list_display = ["date", "demo", "sent", "failed", "pending", "in_flight", "skipped", "deliveries_link"]
    list_filter = ["demo"]
    date_hierarchy = "date"

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deleting an issue deletes its deliveries: the next run would send everyone a second copy

    def get_queryset(self, request):
        def count(*statuses: str) -> Count:
            return Count("deliveries", filter=Q(deliveries__status__in=statuses))

        return (
            super()
            .get_queryset(request)
            .annotate(
                n_sent=count("sent"),
                n_failed=count("failed"),
                n_pending=count("pending", "claimed"),
                n_in_flight=count("sending"),
                n_skipped=count("skipped"),
            )
        )

    @admin.display(ordering="n_sent")
    def sent(self, obj: Issue) -> int:
        return obj.n_sent

    @admin.display(ordering="n_failed")
    def failed(self, obj: Issue) -> int:
        return obj.n_failed

    @admin.display(ordering="n_pending")
    def pending(self, obj: Issue) -> int:
        return obj.n_pending

    @admin.display(ordering="n_in_flight", description="In flight (ambiguous)")
    def in_flight(self, obj: Issue) -> int:
        return obj.n_in_flight

    @admin.display(ordering="n_skipped")
    def skipped(self, obj: Issue) -> int:
        return obj.n_skipped

    @admin.display(description="Deliveries")
    def deliveries_link(self, obj: Issue):
        url = reverse("admin:newsletters_delivery_changelist") + f"?issue__date={obj.date.isoformat()}"
        return format_html('<a href="{}">deliveries</a>', url)


@admin.register(Delivery)
class DeliveryAdmin(RecordAdmin):
    list_display = ["session", "email", "state", "sent", "failure", "links"]
    list_filter = ["status", "feedback", "issue__date", "retryable"]
    search_fields = ["email", "subscriber__email", "message_id", "token"]
    list_select_related = ["issue", "subscriber"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    actions = ["resend", "send_test_copy_to_me", "preview"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a deleted delivery would be planned and sent again

    def changelist_view(self, request, extra_context=None):
        # Counts per status for what the filters select (an issue date, typically), above the list.
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            counts = dict(
                changelist.queryset.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n")
            )
            response.context_data["status_counts"] = [
                (label, counts.get(value, 0)) for value, label in Delivery.Status.choices
            ]
        return response

    @admin.display(description="Session", ordering="issue__date")
    def session(self, obj: Delivery) -> str:
        return obj.issue.date.isoformat()

    @admin.display(description="Status", ordering="status")
    def state(self, obj: Delivery) -> str:
        # One column for what happened: the status, what SES said afterwards, and tries beyond the first.
        parts = [obj.get_status_display()]
        if obj.feedback:
            parts.append(obj.get_feedback_display().lower())
        if obj.attempts > 1:
            parts.append(f"{obj.attempts} tries")
        return " · ".join(parts)

    @admin.display(description="Sent", ordering="sent_at")
    def sent(self, obj: Delivery) -> str:
        return timezone.localtime(obj.sent_at).strftime("%b %d %H:%M") if obj.sent_at else ""

    @admin.display(description="Failure reason")
    def failure(self, obj: Delivery) -> str:
        if obj.status not in (Delivery.Status.FAILED, Delivery.Status.SKIPPED) or not obj.error:
            return ""
        short = obj.error if len(obj.error) <= FAILURE_SHOWN else obj.error[: FAILURE_SHOWN - 1] + "…"
        return format_html('<span title="{}">{}</span>', obj.error[:2000], short)

    @admin.display(description="Open")
    def links(self, obj: Delivery):
        # Relative links: they follow the host staff are on, whatever SITE_URL says.
        parts = []
        if obj.subscriber_id:
            url = reverse("newsletters:preview", args=[obj.subscriber_id, obj.issue.date.isoformat()])
            parts.append(format_html('<a href="{}" target="_blank">preview</a>', url))
        if obj.archive_key:
            url = reverse("newsletters:view", args=[view_token(str(obj.token))])
            parts.append(format_html('<a href="{}" target="_blank">archived copy</a>', url))
        if not parts:
            return "—"
        return format_html(
            '<span style="white-space:nowrap">{}</span>', format_html_join(" · ", "{}", ((p,) for p in parts))
        )

    @admin.action(description="Resend selected deliveries now")
    def resend(self, request, queryset):
        chosen = list(queryset.select_related("issue", "subscriber")[:RESEND_LIMIT])
        if len(chosen) < queryset.count():
            self.message_user(request, f"Resending the first {RESEND_LIMIT} only.", messages.WARNING)
        for day, stage in deliveries_resend(deliveries=chosen).items():
            level = messages.SUCCESS if not stage.failed and not stage.stopped else messages.WARNING
            detail = f"; stopped: {stage.stopped}" if stage.stopped else ""
            self.message_user(
                request, f"{day}: {stage.sent} sent, {stage.failed} failed, {stage.skipped} skipped{detail}", level
            )

    @admin.action(description="Send me a test copy of the selected emails")
    def send_test_copy_to_me(self, request, queryset):
        if not request.user.email:
            self.message_user(request, "Your staff account has no email address to send the copy to.", messages.ERROR)
            return
        sent = 0
        for delivery in queryset.select_related("issue", "subscriber")[:TEST_COPY_LIMIT]:
            if delivery.subscriber is None:
                continue
            preview_send(subscriber=delivery.subscriber, day=delivery.issue.date, to=request.user.email)
            sent += 1
        self.message_user(request, f"Sent {sent} test copies to {request.user.email}.", messages.SUCCESS)

    @admin.action(description="Preview the selected email")
    def preview(self, request, queryset):
        delivery = queryset.select_related("issue").exclude(subscriber=None).first()
        if delivery is None:
            self.message_user(request, "The selected deliveries have no subscriber left to preview.", messages.ERROR)
            return None
        return redirect("newsletters:preview", delivery.subscriber_id, delivery.issue.date.isoformat())


class FellBackFilter(admin.SimpleListFilter):
    title = "fell back to rules"
    parameter_name = "fell_back"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(fallback_reason="")
        if self.value() == "no":
            return queryset.filter(fallback_reason="")
        return queryset


class AnalystCallInline(admin.StackedInline):
    """The audit trail: every request to the model behind this analysis, exactly as sent and received."""

    model = AnalystCall
    extra = 0
    can_delete = False
    fields = [
        "created_at",
        "outcome",
        "status",
        "response_format",
        "latency_ms",
        "input_tokens",
        "output_tokens",
        "error",
        "prompt",
        "raw_reply",
    ]
    readonly_fields = fields

    @admin.display(description="prompt")
    def prompt(self, call: AnalystCall) -> str:
        return "\n\n".join(f"[{m.get('role')}]\n{m.get('content')}" for m in call.messages)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Analysis)
class AnalysisAdmin(admin.ModelAdmin):
    list_display = [
        "ticker",
        "date",
        "model",
        "prompt_version",
        "stance",
        "score",
        "fell_back",
        "input_tokens",
        "output_tokens",
        "fallback_reason",
    ]
    list_filter = [FellBackFilter, "date", "stance", "automated", "model", "prompt_version"]
    search_fields = ["ticker__symbol", "headline"]
    list_select_related = ["ticker"]
    date_hierarchy = "date"
    inlines = [AnalystCallInline]
    readonly_fields = [f.name for f in Analysis._meta.fields]

    @admin.display(description="fell back", ordering="fallback_reason")
    def fell_back(self, analysis: Analysis) -> str:
        # Blank on the normal rows: a red cross on every model answer read as an error.
        return "⚠ fell back" if analysis.fallback_reason else ""

    def has_add_permission(self, request) -> bool:
        return False


def _counts(legend: str, *counts: int) -> str:
    """Three counts in one narrow column, "4 / 0 / 1", their names in the tooltip."""
    return format_html('<span title="{}">{}</span>', legend, " / ".join(str(n) for n in counts))


@admin.register(DailyRun)
class DailyRunAdmin(RecordAdmin):
    list_display = ["date", "status", "started", "tickers", "analyses", "emails", "seconds", "estimated_cost_usd"]
    list_filter = ["status", "dry_run", "date"]
    fields = [("durations_table" if f.name == "durations" else f.name) for f in DailyRun._meta.fields if f.name != "id"]
    readonly_fields = fields
    search_fields = ["summary"]
    change_list_template = "admin/newsletters/dailyrun/change_list.html"

    @admin.display(description="Started", ordering="started_at")
    def started(self, run: DailyRun) -> str:
        return timezone.localtime(run.started_at).strftime("%b %d %H:%M")

    @admin.display(description="Tickers")
    def tickers(self, run: DailyRun):
        return _counts("updated / stale / failed", run.tickers_updated, run.tickers_stale, run.tickers_failed)

    @admin.display(description="Analyses")
    def analyses(self, run: DailyRun):
        return _counts("new / cached / fallback", run.analyses_created, run.analyses_cached, run.analyses_fallback)

    @admin.display(description="Emails")
    def emails(self, run: DailyRun):
        return _counts("sent / failed / skipped", run.emails_sent, run.emails_failed, run.emails_skipped)

    @admin.display(description="Seconds")
    def seconds(self, run: DailyRun) -> str:
        return f"{sum(float(v) for v in run.durations.values()):.1f}" if run.durations else "—"

    @admin.display(description="Durations")
    def durations_table(self, run: DailyRun) -> str:
        return seconds_table(run.durations)

    def get_urls(self):
        from functools import partial

        from django.urls import path

        from .admin_dashboard import dashboard_view

        view = self.admin_site.admin_view(partial(dashboard_view, model_admin=self))
        requeue = self.admin_site.admin_view(self.requeue_dead_letters_view)
        return [
            path("dashboard/", view, name="newsletters_dailyrun_dashboard"),
            path("dead-letters/requeue/", requeue, name="newsletters_dailyrun_requeue_dead_letters"),
            *super().get_urls(),
        ]

    def requeue_dead_letters_view(self, request):
        """The change list's "Requeue dead letters" button: requeue_dead_letters, for staff after a fix."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            result = dead_letters_requeue()
        except DeadLetterError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(
                request,
                f"Requeued {result.moved} batches; {result.waiting} left in the dead letters.",
                messages.SUCCESS,
            )
        return redirect("admin:newsletters_dailyrun_changelist")


@admin.register(SendJob)
class SendJobAdmin(admin.ModelAdmin):
    """Staff's "send now": adding a job here goes through the same job path as the subscriber's button."""

    list_display = ["token", "subscriber", "day", "source", "again", "status", "reason", "created_at", "finished_at"]
    list_filter = ["status", "source", "day"]
    fields = ["subscriber", "day", "again"]
    autocomplete_fields = ["subscriber"]
    search_fields = ["token"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in SendJob._meta.fields] if obj else []

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        try:
            job = send_job_create(subscriber=obj.subscriber, day=obj.day, again=obj.again, source="admin")
        except NothingToSend as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk, obj.token, obj.status = job.pk, job.token, job.status
        self.message_user(request, f"Send job {job.token}: {job.get_status_display().lower()}.", messages.SUCCESS)
