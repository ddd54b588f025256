"""Number formats of the newsletter: one place, so the HTML and the text twin always agree."""

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

from django import template

from markets.snapshots import UpcomingEvent

register = template.Library()
DASH = "—"


@register.filter
def money(value: float | None) -> str:
    return DASH if value is None else f"{value:,.2f}"


@register.filter
def signed_money(value: Decimal | float | None) -> str:
    """+$612.00, -$57.25, and $0.00 for what rounds to zero: never "-$0.00", a loss that did not happen."""
    if value is None:
        return DASH
    cents = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if not cents:
        return "$0.00"
    return f"{'+' if cents > 0 else '-'}${abs(cents):,.2f}"


@register.filter
def money0(value: float | None) -> str:
    return DASH if value is None else f"{value:,.0f}"


@register.filter
def number(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{int(digits)}f}"


@register.filter
def signed_pct(value: float | None, digits: int = 1) -> str:
    if value is None:
        return DASH
    text = f"{value:+.{int(digits)}f}%"
    # A tiny move rounds to "-0.0%", which reads as a loss that did not happen.
    return text[1:] if float(text[:-1]) == 0 else text


@register.filter
def unsigned_pct(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{abs(value):.{int(digits)}f}%"


@register.filter
def direction(value: float | None, digits: int = 2) -> str:
    """up, down or flat, as the reader sees the number at ``digits`` decimals: a move that rounds to zero is flat."""
    if value is None:
        return ""
    shown = round(float(value), int(digits))
    return "up" if shown > 0 else "down" if shown < 0 else "flat"


def dividend(value: float) -> str:
    """Cash per share: cents, or more decimals when the amount has them ($0.26, $0.59375 → $0.5938)."""
    text = f"{value:,.4f}".rstrip("0")
    return text + "0" * (2 - len(text.split(".")[1]))


@register.filter
def coming_up(events: Iterable[UpcomingEvent]) -> str:
    """The card's line of upcoming events: "Ex-dividend Dec 5, $0.26 · Pays Dec 12 · Split 4-for-1 Dec 8"."""
    events = list(events)
    shows_ex_date = any(e.kind == "ex_dividend" for e in events)
    parts = []
    for event in events:
        day = f"{event.date:%b} {event.date.day}"
        # The amount goes with the ex-date; the pay date carries it only when no ex-date is coming (it is past).
        amount = f", ${dividend(event.amount)}" if event.amount is not None else ""
        if event.kind == "ex_dividend":
            parts.append(f"Ex-dividend {day}{amount}")
        elif event.kind == "dividend_pay":
            parts.append(f"Pays {day}{'' if shows_ex_date else amount}")
        elif event.kind == "split":
            parts.append(f"Split {event.ratio} {day}" if event.ratio else f"Split {day}")
        elif event.kind == "earnings":
            parts.append(f"Earnings {day}")
    return " · ".join(parts)
