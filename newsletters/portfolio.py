"""The portfolio line of a subscriber's email, and the order of its cards.

Every figure comes from the session's closes and the shares the subscriber gave, never from the analyst:

- value: Σ shares x close;
- the day's gain or loss: Σ shares x (close - previous close), in money, and in percent of the value at the previous
  close (Σ shares x previous close);
- the biggest mover: the position whose gain or loss in money is largest either way.

A ticker with no bar for the session (stale) is counted at the latest close held, with no change today: it adds its
value to both sides of the percentage and is named in the line as "without new data". A ticker whose data is
unavailable (or that has no close at all) is left out of every figure, and the line says so.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from markets.snapshots import TickerSnapshot

from .templatetags.newsletter_format import direction, money, signed_money, signed_pct

CENT = Decimal("0.01")
_UP, _DOWN = "#137333", "#b3261e"


@dataclass(frozen=True)
class Position:
    symbol: str
    shares: Decimal
    value: Decimal  # shares x close
    #: shares x (close - previous close); None when there is no change today (no new data, or no previous close).
    change: Decimal | None


@dataclass(frozen=True)
class Portfolio:
    value: Decimal
    change: Decimal
    #: The change over the value at the previous close, in percent; None when nothing was worth anything then.
    change_pct: Decimal | None
    positions: tuple[Position, ...]
    #: Held tickers counted at their latest close with no change today.
    without_new_data: tuple[str, ...]
    #: Held tickers left out: their data is unavailable today.
    unavailable: tuple[str, ...]

    @property
    def mover(self) -> Position | None:
        """The position that gained or lost the most money today; None unless two or more moved (one position's
        move is the whole portfolio's)."""
        moved = [p for p in self.positions if p.change is not None and _cents(p.change)]
        if len(moved) < 2:
            return None
        return max(moved, key=lambda p: abs(p.change))


def _decimal(price: float) -> Decimal:
    # repr is the shortest text that reads back as the same float: 141.2 stays 141.2, not 141.19999999999998863...
    return Decimal(repr(price))


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def portfolio_compute(*, snapshots: Mapping[str, TickerSnapshot], holdings: Mapping[str, Decimal]) -> Portfolio | None:
    """The subscriber's portfolio on the session; None when they hold none of these tickers."""
    positions: list[Position] = []
    without_new_data: list[str] = []
    unavailable: list[str] = []
    previous_value = Decimal(0)
    for symbol in sorted(holdings):
        snapshot = snapshots.get(symbol)
        if snapshot is None:
            continue  # not followed: shares of a ticker the reader dropped count for nothing
        shares = holdings[symbol]
        if snapshot.unavailable or snapshot.close is None:
            unavailable.append(symbol)
            continue
        close = _decimal(snapshot.close)
        change = None
        if not snapshot.stale and snapshot.previous_close is not None:
            change = shares * (close - _decimal(snapshot.previous_close))
        else:
            without_new_data.append(symbol)
        position = Position(symbol=symbol, shares=shares, value=shares * close, change=change)
        positions.append(position)
        previous_value += position.value - (change or 0)
    if not positions and not unavailable:
        return None
    value = sum((p.value for p in positions), Decimal(0))
    change = sum((p.change for p in positions if p.change is not None), Decimal(0))
    return Portfolio(
        value=value,
        change=change,
        change_pct=change / previous_value * 100 if previous_value else None,
        positions=tuple(positions),
        without_new_data=tuple(without_new_data),
        unavailable=tuple(unavailable),
    )


def _dollars(amount: Decimal) -> str:
    return f"${money(_cents(amount))}"


def portfolio_lines(portfolio: Portfolio) -> tuple[str, str]:
    """The portfolio line as HTML (styled inline: it goes in after the frame's CSS was inlined) and as plain text."""
    if not portfolio.positions:
        listed = ", ".join(portfolio.unavailable)
        line = f"Portfolio: no value today, the data of your holdings is unavailable ({listed})"
        return html.escape(line), line
    cents = _cents(portfolio.change)
    pct = f" ({signed_pct(float(portfolio.change_pct), 2)})" if portfolio.change_pct is not None else ""
    way = direction(float(cents), 2)
    if way == "flat":
        move_text = move_html = "● unchanged"
    else:
        arrow = "▲" if way == "up" else "▼"
        move_text = f"{arrow} {signed_money(cents)}{pct}"
        move_html = f'<b style="color:{_UP if way == "up" else _DOWN}">{html.escape(move_text)}</b>'
    text = f"Portfolio {_dollars(portfolio.value)} {move_text}"
    rich = f"Portfolio <b>{_dollars(portfolio.value)}</b> {move_html}"
    notes = []
    mover = portfolio.mover
    if mover is not None:
        text += f" · biggest mover {mover.symbol} {signed_money(mover.change)}"
        rich += f" &middot; biggest mover <b>{html.escape(mover.symbol)} {signed_money(mover.change)}</b>"
    if portfolio.without_new_data:
        n = len(portfolio.without_new_data)
        notes.append(f"{n} without new data, counted at {'its' if n == 1 else 'their'} last close")
    if portfolio.unavailable:
        notes.append(f"{', '.join(portfolio.unavailable)} left out: data unavailable today")
    for note in notes:
        text += f" · {note}"
        rich += f" &middot; {html.escape(note)}"
    return rich, text


def cards_order(snapshots: list[TickerSnapshot], portfolio: Portfolio | None = None) -> list[TickerSnapshot]:
    """The order of the cards: the largest position first when the reader gave holdings, then the tickers they hold
    none of by the day's change, best first; tickers without new data after those, and unavailable ones last."""
    values = {p.symbol: p.value for p in portfolio.positions} if portfolio else {}

    def rank(s: TickerSnapshot) -> tuple:
        if s.unavailable or s.close is None:
            return (3, 0, s.symbol)
        if s.stale:
            return (2, 0, s.symbol)
        if s.symbol in values:
            return (0, -values[s.symbol], s.symbol)
        return (1, -s.change_pct if s.change_pct is not None else float("inf"), s.symbol)

    return sorted(snapshots, key=rank)
