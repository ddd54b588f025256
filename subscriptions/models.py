"""Subscribers, the tickers they follow, and the shares they hold of them."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models.functions import Lower

from markets.models import Ticker


class Subscriber(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending confirmation"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"

    #: Statuses that must never be sent to, whatever else happens.
    SUPPRESSED = (Status.UNSUBSCRIBED, Status.BOUNCED, Status.COMPLAINED)

    email = models.EmailField(max_length=254)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    tickers = models.ManyToManyField(Ticker, related_name="subscribers", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    soft_bounces = models.PositiveIntegerField(default=0, help_text="Soft bounces in a row.")

    class Meta:
        ordering = ["email"]
        constraints = [models.UniqueConstraint(Lower("email"), name="subscriber_email_unique_ci")]

    def __str__(self) -> str:
        return self.email

    def save(self, *args, **kwargs) -> None:
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        # save() lower-cases the address, which can lengthen it ("İ" becomes two characters): check that length.
        if self.email and len(self.email.strip().lower()) > self._meta.get_field("email").max_length:
            raise ValidationError({"email": "This address is too long once lower-cased."})

    @property
    def is_suppressed(self) -> bool:
        return self.status in self.SUPPRESSED


#: The most shares of one ticker a subscriber may give: a typo's extra digits are caught, any real position fits.
MAX_SHARES = Decimal("100000000")
SHARES_DECIMALS = 4


def shares_text(shares: Decimal) -> str:
    """A share count as people write it: 10, 2.5 (never 10.0000 or 1E+1)."""
    text = format(shares, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class Holding(models.Model):
    """How many shares of a followed ticker the subscriber holds (optional): the email then values the position.

    Only a followed ticker has a holding: unfollowing a ticker removes it (services.subscriber_set_tickers).
    """

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="holdings")
    ticker = models.ForeignKey(Ticker, on_delete=models.CASCADE, related_name="holdings")
    shares = models.DecimalField(
        max_digits=9 + SHARES_DECIMALS, decimal_places=SHARES_DECIMALS, validators=[MaxValueValidator(MAX_SHARES)]
    )

    class Meta:
        # No default ordering: the per-batch read looks holdings up in a correlated subquery, which needs no join.
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "ticker"], name="holding_unique_per_ticker"),
            models.CheckConstraint(condition=models.Q(shares__gt=0), name="holding_shares_positive"),
        ]

    def __str__(self) -> str:
        return f"{shares_text(self.shares)} shares"


class SnsMessage(models.Model):
    """An SNS message already handled: SNS delivers at least once, so a replayed MessageId is ignored."""

    message_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=40)
    topic_arn = models.CharField(max_length=300)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.message_id
