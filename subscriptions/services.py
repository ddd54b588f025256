"""Writes of subscribers: creation, confirmation, status changes and ticker changes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from markets.services import ticker_ensure

from . import emails, signals, tokens
from .models import Holding, Subscriber, shares_text
from .selectors import holdings_of


@transaction.atomic
def subscriber_create(
    *,
    email: str,
    symbols: Iterable[str],
    status: str = Subscriber.Status.PENDING,
    holdings: Mapping[str, Decimal] | None = None,
) -> Subscriber:
    """Create a subscriber following ``symbols`` (already validated); an existing address keeps its status."""
    subscriber, created = Subscriber.objects.get_or_create(
        email__iexact=email.strip(), defaults={"email": email, "status": status}
    )
    if created and status == Subscriber.Status.ACTIVE:
        subscriber.confirmed_at = timezone.now()
        subscriber.save(update_fields=["confirmed_at", "updated_at"])
    subscriber_set_tickers(subscriber=subscriber, symbols=symbols, holdings=holdings)
    return subscriber


@transaction.atomic
def subscriber_set_tickers(
    *, subscriber: Subscriber, symbols: Iterable[str], holdings: Mapping[str, Decimal] | None = None
) -> None:
    """Follow exactly ``symbols``; a ticker no longer followed loses its holding.

    ``holdings`` (symbol → shares, validated) replaces the subscriber's holdings; None keeps those of the tickers
    still followed (a caller that knows nothing of shares must not erase them).
    """
    tickers = {s: ticker_ensure(symbol=s) for s in symbols}
    subscriber.tickers.set(list(tickers.values()))
    if holdings is None:
        Holding.objects.filter(subscriber=subscriber).exclude(ticker__in=list(tickers.values())).delete()
        return
    Holding.objects.filter(subscriber=subscriber).delete()
    Holding.objects.bulk_create(
        Holding(subscriber=subscriber, ticker=tickers[symbol], shares=shares)
        for symbol, shares in holdings.items()
        if symbol in tickers
    )


@transaction.atomic
def subscriber_set_status(*, subscriber: Subscriber, status: str) -> Subscriber:
    subscriber.status = status
    now = timezone.now()
    fields = ["status", "updated_at"]
    if status == Subscriber.Status.ACTIVE and subscriber.confirmed_at is None:
        subscriber.confirmed_at = now
        fields.append("confirmed_at")
    if status == Subscriber.Status.UNSUBSCRIBED:
        subscriber.unsubscribed_at = now
        fields.append("unsubscribed_at")
    subscriber.save(update_fields=fields)
    return subscriber


# -- double opt-in --------------------------------------------------------------------------------------


def subscriber_subscribe(*, email: str, symbols: list[str], holdings: Mapping[str, Decimal] | None = None) -> None:
    """Someone asked to subscribe ``email`` to ``symbols`` (validated), holding ``holdings`` (symbol → shares).
    Double opt-in, and no enumeration:

    - a new or pending address follows ``symbols`` and is sent a confirmation link;
    - an unsubscribed address asked again: the same, it stays unsubscribed until it confirms;
    - a confirmed address (active or paused) changes nothing and is sent a link to manage the subscription;
    - a suppressed address (bounced, complained) is sent nothing.
    The page shown afterwards is the same in every case.
    """
    email = email.strip().lower()
    with transaction.atomic():
        subscriber = _subscriber_lock_or_create(email=email)
        if subscriber.status in (Subscriber.Status.BOUNCED, Subscriber.Status.COMPLAINED):
            return
        if subscriber.status in (Subscriber.Status.ACTIVE, Subscriber.Status.PAUSED):
            transaction.on_commit(lambda: emails.manage_email_send(subscriber=subscriber))
            return
        subscriber_set_tickers(subscriber=subscriber, symbols=symbols, holdings=holdings or {})
        transaction.on_commit(lambda: emails.confirmation_email_send(subscriber=subscriber))


def _subscriber_lock_or_create(*, email: str) -> Subscriber:
    """The row for ``email``, locked until the transaction ends; created pending when there is none.

    A double-clicked form sends two requests at once: both find no row, both insert, and the unique index makes
    the second wait for the first and then fail. That one then locks the row the first created, and goes on.
    """
    subscriber = Subscriber.objects.select_for_update().filter(email__iexact=email).first()
    if subscriber is not None:
        return subscriber
    try:
        with transaction.atomic():  # a savepoint: the failed insert must not spoil the outer transaction
            return Subscriber.objects.create(email=email, status=Subscriber.Status.PENDING)
    except IntegrityError:
        return Subscriber.objects.select_for_update().get(email__iexact=email)


def subscriber_resend_confirmation(*, subscriber: Subscriber) -> bool:
    """Send a fresh confirmation link to a pending or unsubscribed address; False (nothing sent) for any other.

    A confirmed address has nothing to confirm and a suppressed one must never be mailed, so staff cannot send
    either one by mistake.
    """
    if subscriber.status not in (Subscriber.Status.PENDING, Subscriber.Status.UNSUBSCRIBED):
        return False
    transaction.on_commit(lambda: emails.confirmation_email_send(subscriber=subscriber))
    return True


class StaleConfirmation(Exception):
    """The confirmation link was sent before the subscriber's later unsubscribe, which it must not undo."""


@transaction.atomic
def subscriber_confirm(*, subscriber: Subscriber, opt_out_stamp: int | None) -> Subscriber:
    """The address owner clicked the link: from now on they receive the daily email.

    ``opt_out_stamp`` is the one the link carries (tokens.read_confirm_token); raises StaleConfirmation when the
    subscriber unsubscribed after the link was sent. Checked under the row's lock, so an unsubscribe that lands
    while the click is on its way still wins.
    """
    subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
    if tokens.confirm_token_is_stale(
        opt_out_stamp, status=subscriber.status, unsubscribed_at=subscriber.unsubscribed_at
    ):
        raise StaleConfirmation(f"subscriber {subscriber.pk}")
    if subscriber.status in (Subscriber.Status.PENDING, Subscriber.Status.UNSUBSCRIBED):
        subscriber.unsubscribed_at = None
        subscriber.save(update_fields=["unsubscribed_at", "updated_at"])
        subscriber_set_status(subscriber=subscriber, status=Subscriber.Status.ACTIVE)
    return subscriber


def subscriber_export(*, subscriber: Subscriber) -> dict:
    """Everything Walter holds about the subscriber, for "download my data"."""
    data = {
        "email": subscriber.email,
        "status": subscriber.status,
        "tickers": sorted(subscriber.tickers.values_list("symbol", flat=True)),
        # Shares as exact decimal text: a JSON number could come back as 2.4999999.
        "holdings": {symbol: shares_text(shares) for symbol, shares in holdings_of(subscriber).items()},
        "created_at": subscriber.created_at.isoformat(),
        "confirmed_at": subscriber.confirmed_at.isoformat() if subscriber.confirmed_at else None,
        "unsubscribed_at": subscriber.unsubscribed_at.isoformat() if subscriber.unsubscribed_at else None,
        "soft_bounces": subscriber.soft_bounces,
    }
    for _receiver, extra in signals.subscriber_exporting.send(sender=Subscriber, subscriber=subscriber):
        data.update(extra or {})
    return data


@transaction.atomic
def subscriber_erase(*, subscriber: Subscriber) -> None:
    """Delete the subscriber and, through the signal, every personal trace other apps keep (deliveries, archive)."""
    signals.subscriber_erasing.send(sender=Subscriber, subscriber=subscriber)
    subscriber.delete()


@transaction.atomic
def subscriber_suppress(*, subscriber: Subscriber, status: str) -> Subscriber:
    """Never send to this address again (a hard bounce, a complaint, or staff's decision); reversible in the admin."""
    subscriber.soft_bounces = 0
    subscriber.save(update_fields=["soft_bounces", "updated_at"])
    return subscriber_set_status(subscriber=subscriber, status=status)


@transaction.atomic
def subscriber_unsuppress(*, subscriber: Subscriber) -> Subscriber:
    """Staff lifted a suppression: the subscriber is active again (they had confirmed before)."""
    subscriber.soft_bounces = 0
    subscriber.save(update_fields=["soft_bounces", "updated_at"])
    status = Subscriber.Status.ACTIVE if subscriber.confirmed_at else Subscriber.Status.PENDING
    return subscriber_set_status(subscriber=subscriber, status=status)


@transaction.atomic
def subscriber_soft_bounce(*, subscriber: Subscriber, limit: int) -> Subscriber:
    """One more soft bounce in a row; ``limit`` in a row suppresses the address as bounced."""
    Subscriber.objects.filter(pk=subscriber.pk).update(soft_bounces=F("soft_bounces") + 1)
    subscriber.refresh_from_db(fields=["soft_bounces"])
    if subscriber.soft_bounces >= limit and not subscriber.is_suppressed:
        subscriber_set_status(subscriber=subscriber, status=Subscriber.Status.BOUNCED)
    return subscriber


def subscriber_delivered(*, subscriber: Subscriber) -> None:
    """A delivery went through: soft bounces are counted in a row, so the count starts again."""
    if subscriber.soft_bounces:
        Subscriber.objects.filter(pk=subscriber.pk).update(soft_bounces=0)


def subscriber_data_link_send(*, subscriber: Subscriber, purpose: str) -> None:
    """Someone holding the subscriber's preferences link asked to download or delete the data: that link may have
    been forwarded, so the action itself waits for a fresh link that only the address's owner receives.

    Sent at once, not on commit: nothing is written, and the caller must learn when the email service refuses.
    """
    if purpose not in tokens.DATA_PURPOSES:
        raise ValueError(f"not a data request: {purpose!r}")
    emails.data_link_email_send(subscriber=subscriber, purpose=purpose)
