"""Number formats of the newsletter: one place, so the HTML and the text twin always agree."""

from decimal import ROUND_HALF_UP, Decimal

from django import template

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
