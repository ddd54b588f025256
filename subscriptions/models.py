"""Subscribers and the tickers they follow."""

from django.core.exceptions import ValidationError
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


class SnsMessage(models.Model):
    """An SNS message already handled: SNS delivers at least once, so a replayed MessageId is ignored."""

    message_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=40)
    topic_arn = models.CharField(max_length=300)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.message_id
