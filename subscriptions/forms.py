"""The subscribe and preferences forms: an address and up to 20 listed US tickers."""

from __future__ import annotations

import re

from django import forms

from markets.selectors import TickerDirectoryEmpty, listed_tickers

MAX_TICKERS = 20
EMAIL_MAX_LENGTH = 254
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


def parse_symbols(raw: str) -> list[str]:
    """Symbols from what was typed (commas or spaces), upper case, in order, each once."""
    seen: list[str] = []
    for part in re.split(r"[\s,;]+", raw.upper()):
        if part and part not in seen:
            seen.append(part)
    return seen


class TickersField(forms.CharField):
    """Symbols, checked against the local ticker directory (never the provider): an unknown one is named."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_length", 400)
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
        try:
            listed = listed_tickers(symbols)
        except TickerDirectoryEmpty as exc:
            raise forms.ValidationError(str(exc), code="unavailable") from None
        unknown = [s for s in symbols if s not in listed]
        if unknown:
            raise forms.ValidationError(" ".join(f'"{s}" is not a listed US ticker.' for s in unknown), code="unknown")
        return symbols


class SubscribeForm(forms.Form):
    email = forms.EmailField(max_length=EMAIL_MAX_LENGTH, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    tickers = TickersField(
        help_text="Up to 20, for example AAPL, MSFT.",
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


class TickersForm(forms.Form):
    tickers = TickersField(
        widget=forms.TextInput(attrs={"autocomplete": "off", "data-ticker-input": ""}),
    )
