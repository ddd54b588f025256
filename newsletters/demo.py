"""The demo's example subscribers, and the guard that keeps a real email service from ever writing to them."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

from subscriptions.models import Subscriber
from subscriptions.selectors import subscribers_receiving

DEMO_SUBSCRIBERS = [
    ("ada@example.com", Subscriber.Status.ACTIVE, ["NVDA", "MSFT", "AAPL"]),
    ("grace@example.com", Subscriber.Status.ACTIVE, ["AMZN", "GOOGL", "META", "NFLX"]),
    ("linus@example.com", Subscriber.Status.ACTIVE, ["TSLA", "AMD", "INTC"]),
    ("margaret@example.com", Subscriber.Status.ACTIVE, ["JPM", "V", "BRK.B", "XOM", "KO"]),
    ("ken@example.com", Subscriber.Status.ACTIVE, ["SPY", "QQQ"]),
    ("barbara@example.com", Subscriber.Status.PENDING, ["IBM", "ORCL"]),
    ("dennis@example.com", Subscriber.Status.PAUSED, ["CSCO"]),
    ("edsger@example.com", Subscriber.Status.UNSUBSCRIBED, ["DIS"]),
]

# Shares some demo subscribers hold, so the demo email shows the portfolio line (the others show none); margaret
# holds only some of the tickers she follows, and a fraction of a share.
DEMO_HOLDINGS: dict[str, dict[str, Decimal]] = {
    "ada@example.com": {"NVDA": Decimal(40), "MSFT": Decimal(25), "AAPL": Decimal(60)},
    "margaret@example.com": {"JPM": Decimal(30), "KO": Decimal("120.5"), "BRK.B": Decimal("7.25")},
}

# Backends that hand mail to the outside world; the others write files, keep it in memory, or are test doubles.
REAL_EMAIL_BACKENDS = ("anymail.", "django.core.mail.backends.smtp.")


class DemoSubscribersPresent(Exception):
    """The demo's example subscribers would be emailed through a real email service."""


def demo_subscribers_refuse() -> None:
    """Raise when the configured email backend is a real one and the demo's example subscribers would receive."""
    if not settings.EMAIL_BACKEND.startswith(REAL_EMAIL_BACKENDS):
        return
    found = subscribers_receiving().filter(email__in=[email for email, _, _ in DEMO_SUBSCRIBERS]).count()
    if found:
        raise DemoSubscribersPresent(
            f"{found} of the demo's example subscribers are in this database and {settings.EMAIL_BACKEND} would "
            "email them: start from a clean database (or delete them in the admin) before sending for real"
        )
