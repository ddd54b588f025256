import dataclasses

import pytest
from django.core.management import call_command

from markets.selectors import ticker_snapshots
from newsletters.compose import PersonalLinks, email_compose, issue_content_build
from newsletters.templatetags.newsletter_format import direction, signed_pct


def test_signed_pct_never_shows_minus_zero():
    assert "-0" not in signed_pct(-0.04, 1)
    assert signed_pct(-0.04, 1) == signed_pct(0.04, 1) == signed_pct(0.0, 1)


def test_signed_pct_keeps_the_sign_of_a_real_move():
    assert signed_pct(-0.06, 1).startswith("-")
    assert signed_pct(0.06, 1).startswith("+")
    assert signed_pct(None) == "—"


@pytest.mark.django_db
def test_a_move_that_rounds_to_zero_reads_unchanged_in_the_email(trading_day):
    assert [direction(v) for v in (0.004, -0.004, 0.006, -0.006, None)] == ["flat", "flat", "up", "down", ""]
    call_command("seed_demo", "--quiet")
    call_command("market_data", "update", "--ticker", "AAPL", "--date", trading_day.isoformat())
    snapshot = ticker_snapshots(["AAPL"], trading_day, demo=True)["AAPL"]
    tiny = {"AAPL": dataclasses.replace(snapshot, change_pct=-0.003)}
    content = issue_content_build(day=trading_day, snapshots=tiny, analyses={})
    links = PersonalLinks(view="#v", preferences="#p", unsubscribe="#u")
    composed = email_compose(content=content, symbols=["AAPL"], email="ada@example.com", links=links)
    for body in (composed.html, composed.text):
        assert "unchanged" in body and "-0.0" not in body and "0.00%" not in body
