"""The subscribe and preferences forms: an address and up to 20 listed US tickers, each with an optional number of
shares held ("AAPL:10, MSFT": the text the ticker chips write, and what a reader without script types)."""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms

from markets.selectors import TickerDirectoryEmpty, listed_tickers

from .models import MAX_SHARES, SHARES_DECIMALS, shares_text

MAX_TICKERS = 20
EMAIL_MAX_LENGTH = 254
TICKERS_MAX_LENGTH = 600  # 20 entries like "GOOGL:1250.5, " with room to spare
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")
_SEPARATOR = re.compile(r"[\s,;]+")
_COLON = re.compile(r"\s*:\s*")  # "AAPL : 10" is one entry, not three
_SHARES = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")  # digits only: Decimal would also take "NaN" and "1e9"


def parse_entries(raw: str) -> list[tuple[str, str]]:
    """(symbol, shares as typed or "") of each entry typed (commas or spaces between entries), upper case, in order."""
    entries = []
    for part in _SEPARATOR.split(_COLON.sub(":", raw)):
        if part:
            symbol, _, shares = part.partition(":")
            # ":10" names no ticker: kept whole, so it is reported as not a ticker symbol.
            entries.append(((symbol or part).upper(), shares))
    return entries


def parse_symbols(raw: str) -> list[str]:
    """Symbols from what was typed, in order, each once; share counts left out."""
    seen: list[str] = []
    for symbol, _ in parse_entries(raw):
        if symbol not in seen:
            seen.append(symbol)
    return seen


def parse_holdings(raw: str) -> tuple[dict[str, Decimal], list[str]]:
    """The shares typed per symbol, and a message for each count that is not a valid one."""
    holdings: dict[str, Decimal] = {}
    errors: list[str] = []
    for symbol, typed in parse_entries(raw):
        if not typed:
            continue
        try:
            shares = _shares(symbol, typed)
        except forms.ValidationError as exc:
            errors.extend(exc.messages)
            continue
        if holdings.get(symbol, shares) != shares:
            errors.append(f"{symbol} is given twice with different numbers of shares.")
        holdings.setdefault(symbol, shares)
    return holdings, errors


def _shares(symbol: str, typed: str) -> Decimal:
    if not _SHARES.match(typed):
        raise forms.ValidationError(
            f'"{typed[:12]}" is not a number of shares: write {symbol}:10, or {symbol}:2.5 for a fraction.'
        )
    shares = Decimal(typed)
    if shares <= 0:
        raise forms.ValidationError(
            f"The shares of {symbol} must be more than 0 (leave them out to follow {symbol} without a holding)."
        )
    if shares.normalize().as_tuple().exponent < -SHARES_DECIMALS:
        raise forms.ValidationError(f"The shares of {symbol} have at most {SHARES_DECIMALS} decimals.")
    if shares > MAX_SHARES:
        raise forms.ValidationError(f"The shares of {symbol} are at most {MAX_SHARES:,}.")
    return shares.quantize(Decimal(1).scaleb(-SHARES_DECIMALS))


class TickersField(forms.CharField):
    """Symbols, checked against the local ticker directory (never the provider): an unknown one is named. Shares
    typed after a symbol are checked here too; the form's ``holdings`` holds them."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_length", TICKERS_MAX_LENGTH)
        super().__init__(**kwargs)

    def clean(self, value: str) -> list[str]:
        value = super().clean(value)
        symbols = parse_symbols(value)
        if not symbols:
            raise forms.ValidationError("Add at least one ticker.", code="required")
        if len(symbols) > MAX_TICKERS:
            raise forms.ValidationError(f"At most {MAX_TICKERS} tickers; you entered {len(symbols)}.", code="too_many")
        malformed = [s for s in symbols if not _SYMBOL.match(s)]
        if malformed:
            raise forms.ValidationError(
                " ".join(f'"{s[:12]}" is not a ticker symbol.' for s in malformed[:3]), code="malformed"
            )
        _, share_errors = parse_holdings(value)
        if share_errors:
            raise forms.ValidationError(" ".join(share_errors[:3]), code="shares")
        try:
            listed = listed_tickers(symbols)
        except TickerDirectoryEmpty as exc:
            raise forms.ValidationError(str(exc), code="unavailable") from None
        unknown = [s for s in symbols if s not in listed]
        if unknown:
            raise forms.ValidationError(" ".join(f'"{s}" is not a listed US ticker.' for s in unknown), code="unknown")
        return symbols


class _FollowsForm(forms.Form):
    """A form with a ``tickers`` field: cleaned, it also has ``holdings`` (symbol → shares) from the same text."""

    def clean(self) -> dict:
        cleaned = super().clean()
        if "tickers" in cleaned:
            cleaned["holdings"], _ = parse_holdings(self["tickers"].data or "")
        return cleaned


def tickers_initial(symbols: list[str], holdings: dict[str, Decimal]) -> str:
    """The tickers field's text for what a subscriber follows and holds: "AAPL:10, MSFT"."""
    return ", ".join(f"{s}:{shares_text(holdings[s])}" if s in holdings else s for s in symbols)


class SubscribeForm(_FollowsForm):
    email = forms.EmailField(max_length=EMAIL_MAX_LENGTH, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    tickers = TickersField(
        help_text="Up to 20, for example AAPL, MSFT; add the shares you hold after a colon (AAPL:10) if you wish.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "AAPL, MSFT", "data-ticker-input": ""}),
    )
    # Bots fill every field; people never see this one.
    website = forms.CharField(required=False, widget=forms.TextInput(attrs={"tabindex": "-1", "autocomplete": "off"}))

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        # Lower-casing can lengthen an address ("İ" becomes two characters), past what the column holds.
        if len(email) > EMAIL_MAX_LENGTH:
            raise forms.ValidationError(f"An address has at most {EMAIL_MAX_LENGTH} characters.", code="max_length")
        return email


class TickersForm(_FollowsForm):
    tickers = TickersField(
        widget=forms.TextInput(attrs={"autocomplete": "off", "data-ticker-input": ""}),
    )
