"""Holdings (issue 13): shares per ticker on the subscriber's pages, the portfolio line at the top of the email
(every figure hand-computed below), the order of the cards, and the holdings' place in export, erasure and admin."""

from __future__ import annotations

import datetime as dt
import email
import json
import re
from decimal import ROUND_HALF_UP, Decimal
from email import policy

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from markets.models import Ticker
from markets.selectors import ticker_snapshots
from newsletters.compose import PersonalLinks, email_compose, issue_content_build
from newsletters.demo import DEMO_HOLDINGS
from newsletters.portfolio import cards_order, portfolio_compute, portfolio_lines
from newsletters.preview import preview_email
from newsletters.templatetags.newsletter_format import signed_money
from subscriptions import tokens
from subscriptions.models import Holding, Subscriber
from subscriptions.selectors import follows_by_subscriber, holdings_of
from subscriptions.services import subscriber_create, subscriber_erase, subscriber_export, subscriber_set_tickers
from tests.test_llm_analyst import DAY, snapshot

LINKS = PersonalLinks(view="https://w.example/v", preferences="https://w.example/p", unsubscribe="https://w.example/u")
D = Decimal


def day_snapshots() -> dict:
    """A session like the mock-up's, plus a ticker with no bar today (KO) and one whose data failed (TSLA)."""
    earlier = DAY - dt.timedelta(days=1)
    return {
        "NVDA": snapshot("NVDA", close=141.2, previous_close=136.55, change_pct=3.4053),
        "MSFT": snapshot("MSFT", close=412.8, previous_close=410.34, change_pct=0.5995),
        "AAPL": snapshot("AAPL", close=231.4, previous_close=234.21, change_pct=-1.1998),
        # Its latest bar is yesterday's: that bar's own change (62.10 vs 61.00) is not today's.
        "KO": snapshot("KO", as_of=earlier, close=62.1, previous_close=61.0, change_pct=1.8033),
        "TSLA": snapshot("TSLA", as_of=earlier, close=300.0, previous_close=290.0, unavailable="provider 502"),
        "GOOGL": snapshot("GOOGL", close=175.0, previous_close=170.0, change_pct=2.9412),
    }


# -- the arithmetic, by hand ------------------------------------------------------------------------------


def test_value_gain_percent_and_biggest_mover_match_the_hand_computed_figures():
    snapshots = day_snapshots()
    holdings = {"NVDA": D(30), "MSFT": D("12.5"), "AAPL": D(20)}
    portfolio = portfolio_compute(snapshots=snapshots, holdings=holdings)
    # NVDA 30 x 141.20 = 4,236.00, change 30 x 4.65 = +139.50
    # MSFT 12.5 x 412.80 = 5,160.00, change 12.5 x 2.46 = +30.75
    # AAPL 20 x 231.40 = 4,628.00, change 20 x -2.81 = -56.20
    assert portfolio.value == D("14024.00")
    assert portfolio.change == D("114.05")
    # over the value at the previous close: 14,024.00 - 114.05 = 13,909.95 -> 0.8199%
    assert round(portfolio.change_pct, 4) == D("0.8199")
    assert portfolio.mover.symbol == "NVDA" and portfolio.mover.change == D("139.50")
    html, text = portfolio_lines(portfolio)
    assert text == "Portfolio $14,024.00 ▲ +$114.05 (+0.82%) · biggest mover NVDA +$139.50"
    assert "<b>$14,024.00</b>" in html and "▲ +$114.05 (+0.82%)" in html and "NVDA +$139.50" in html


def test_a_ticker_without_new_data_counts_at_its_last_close_with_no_change_today():
    holdings = {"NVDA": D(30), "MSFT": D("12.5"), "AAPL": D(20), "KO": D(100)}
    portfolio = portfolio_compute(snapshots=day_snapshots(), holdings=holdings)
    # KO adds 100 x 62.10 = 6,210.00 to the value, and to the value at the previous close, but no change:
    # 20,234.00 in all, +114.05 over 20,119.95 = +0.5669%.
    assert portfolio.value == D("20234.00")
    assert portfolio.change == D("114.05")
    assert round(portfolio.change_pct, 4) == D("0.5669")
    assert portfolio.without_new_data == ("KO",)
    _, text = portfolio_lines(portfolio)
    assert text == (
        "Portfolio $20,234.00 ▲ +$114.05 (+0.57%) · biggest mover NVDA +$139.50"
        " · 1 without new data, counted at its last close"
    )


def test_a_ticker_whose_data_is_unavailable_is_left_out_and_named():
    holdings = {"AAPL": D(20), "MSFT": D("12.5"), "TSLA": D(10)}
    portfolio = portfolio_compute(snapshots=day_snapshots(), holdings=holdings)
    # AAPL 4,628.00 + MSFT 5,160.00; change -56.20 + 30.75 = -25.45 over 9,813.45 = -0.2593%.
    assert portfolio.value == D("9788.00") and portfolio.change == D("-25.45")
    assert round(portfolio.change_pct, 4) == D("-0.2593")
    assert portfolio.unavailable == ("TSLA",)
    html, text = portfolio_lines(portfolio)
    assert text == (
        "Portfolio $9,788.00 ▼ -$25.45 (-0.26%) · biggest mover AAPL -$56.20 · TSLA left out: data unavailable today"
    )
    assert "#b3261e" in html  # a loss is red


def test_when_every_holding_is_unavailable_no_value_is_shown_as_if_it_were_data():
    portfolio = portfolio_compute(snapshots=day_snapshots(), holdings={"TSLA": D(10)})
    html, text = portfolio_lines(portfolio)
    assert portfolio.value == 0 and not portfolio.positions
    assert text == "Portfolio: no value today, the data of your holdings is unavailable (TSLA)"
    assert "$" not in text and "$" not in html


def test_fractional_shares_and_a_lone_position_have_no_separate_mover():
    portfolio = portfolio_compute(snapshots=day_snapshots(), holdings={"GOOGL": D("0.3333")})
    # 0.3333 x 175.00 = 58.3275 -> $58.33; 0.3333 x 5.00 = 1.6665 -> +$1.67 over 56.661 = +2.9412%.
    _, text = portfolio_lines(portfolio)
    assert portfolio.mover is None
    assert text == "Portfolio $58.33 ▲ +$1.67 (+2.94%)"


def test_a_change_that_rounds_to_zero_reads_unchanged_never_minus_zero():
    snapshots = {"KO": snapshot("KO", close=100.0, previous_close=100.004, change_pct=-0.004)}
    portfolio = portfolio_compute(snapshots=snapshots, holdings={"KO": D(1)})
    assert portfolio.change == D("-0.004")
    _, text = portfolio_lines(portfolio)
    assert text == "Portfolio $100.00 ● unchanged"
    assert "-$0" not in text


def test_holdings_of_tickers_not_followed_or_not_held_count_for_nothing():
    snapshots = day_snapshots()
    assert portfolio_compute(snapshots={"AAPL": snapshots["AAPL"]}, holdings={"NVDA": D(5)}) is None


@pytest.mark.parametrize(
    ("amount", "shown"),
    [(D("1234.5"), "+$1,234.50"), (D("-57.25"), "-$57.25"), (D("-0.004"), "$0.00"), (0, "$0.00"), (0.005, "+$0.01")],
)
def test_signed_money(amount, shown):
    assert signed_money(amount) == shown


# -- the order of the cards -------------------------------------------------------------------------------


def test_without_holdings_cards_go_by_the_days_change_best_first_then_stale_then_unavailable():
    ordered = cards_order(list(day_snapshots().values()))
    assert [s.symbol for s in ordered] == ["NVDA", "GOOGL", "MSFT", "AAPL", "KO", "TSLA"]


def test_with_holdings_the_largest_position_comes_first_and_tickers_not_held_follow_by_change():
    snapshots = day_snapshots()
    holdings = {"NVDA": D(30), "MSFT": D("12.5"), "AAPL": D(20), "KO": D(1000)}
    portfolio = portfolio_compute(snapshots=snapshots, holdings=holdings)
    ordered = cards_order(list(snapshots.values()), portfolio)
    # MSFT 5,160 > AAPL 4,628 > NVDA 4,236; GOOGL is not held; KO (62,100 held) has no new data: after them.
    assert [s.symbol for s in ordered] == ["MSFT", "AAPL", "NVDA", "GOOGL", "KO", "TSLA"]


def test_the_email_opens_with_the_portfolio_line_and_orders_its_cards(settings):
    snapshots = day_snapshots()
    content = issue_content_build(day=DAY, snapshots=snapshots, analyses={}, charts={})
    symbols = sorted(snapshots)
    holdings = {"NVDA": D(30), "MSFT": D("12.5"), "AAPL": D(20)}
    composed = email_compose(content=content, symbols=symbols, email="x@example.com", links=LINKS, holdings=holdings)

    summary = composed.html.index("Portfolio <b>$14,024.00</b>")
    cards = [composed.html.index(f">{s}</span>") for s in ("MSFT", "AAPL", "NVDA", "GOOGL", "KO", "TSLA")]
    assert summary < cards[0] and cards == sorted(cards)
    text_line = "Portfolio $14,024.00 ▲ +$114.05 (+0.82%) · biggest mover NVDA +$139.50"
    assert text_line in composed.text
    text_cards = [composed.text.index(f"\n{s} {s} Corporation") for s in ("MSFT", "AAPL", "NVDA", "GOOGL")]
    assert composed.text.index(text_line) < text_cards[0] and text_cards == sorted(text_cards)

    plain = email_compose(content=content, symbols=symbols, email="x@example.com", links=LINKS)
    assert "Portfolio" not in plain.html and "Portfolio" not in plain.text
    assert plain.html.index(">NVDA</span>") < plain.html.index(">GOOGL</span>") < plain.html.index(">AAPL</span>")
    assert plain.subject == composed.subject, "the headline does not depend on holdings"


# -- the subscriber's pages ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_cache")
def test_subscribing_with_shares_stores_them_with_the_tickers(client, outbox):
    response = client.post("/", {"email": "ada@example.com", "tickers": "aapl:10, msft : 2.5, NVDA"})
    assert response.status_code == 302
    subscriber = Subscriber.objects.get(email="ada@example.com")
    assert sorted(subscriber.tickers.values_list("symbol", flat=True)) == ["AAPL", "MSFT", "NVDA"]
    assert holdings_of(subscriber) == {"AAPL": D(10), "MSFT": D("2.5")}


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_cache")
@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("AAPL:abc, MSFT", '"abc" is not a number of shares: write AAPL:10, or AAPL:2.5 for a fraction.'),
        ("AAPL:NaN", '"NaN" is not a number of shares'),
        ("AAPL:1e3", '"1e3" is not a number of shares'),
        ("AAPL:0", "The shares of AAPL must be more than 0"),
        ("AAPL:-3", "The shares of AAPL must be more than 0"),
        ("AAPL:1.23456", "The shares of AAPL have at most 4 decimals."),
        ("AAPL:100000000.5", "The shares of AAPL are at most 100,000,000."),
        ("AAPL:10, AAPL:5", "AAPL is given twice with different numbers of shares."),
        (":10", '":10" is not a ticker symbol.'),
    ],
)
def test_bad_shares_are_a_400_with_the_message_next_to_the_field_and_the_form_kept(client, typed, message):
    response = client.post("/", {"email": "ada@example.com", "tickers": typed})
    html = response.content.decode()
    assert response.status_code == 400
    error = re.search(r'<p class="error" id="tickers-error">([^<]*)</p>', html).group(1)
    assert message.replace('"', "&quot;") in error
    assert 'value="ada@example.com"' in html
    assert f'value="{escape(typed)}"' in html  # what was typed is still in the field
    assert not Subscriber.objects.exists() and not Holding.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_cache")
def test_preferences_round_trip_shares_and_removing_a_ticker_removes_its_holding(client):
    subscriber = subscriber_create(
        email="ada@example.com", symbols=["AAPL", "MSFT"], status="active", holdings={"AAPL": D("10.5")}
    )
    url = f"/preferences/{tokens.make_token(tokens.PREFERENCES, subscriber.pk)}/"
    assert 'value="AAPL:10.5, MSFT"' in client.get(url).content.decode()

    saved = client.post(url, {"action": "tickers", "tickers": "MSFT:3, NVDA:0.25"})
    assert saved.status_code == 200 and 'value="MSFT:3, NVDA:0.25"' in saved.content.decode()
    assert holdings_of(subscriber) == {"MSFT": D(3), "NVDA": D("0.25")}
    assert not Holding.objects.filter(subscriber=subscriber, ticker__symbol="AAPL").exists()

    bad = client.post(url, {"action": "tickers", "tickers": "MSFT:3, NVDA:-1"})
    assert bad.status_code == 400 and "The shares of NVDA must be more than 0" in bad.content.decode()
    assert holdings_of(subscriber) == {"MSFT": D(3), "NVDA": D("0.25")}, "a bad form changes nothing"

    client.post(url, {"action": "tickers", "tickers": "MSFT, NVDA"})
    assert holdings_of(subscriber) == {}, "a count left out is a holding removed"


@pytest.mark.django_db
def test_changing_tickers_without_saying_anything_of_shares_keeps_those_still_followed():
    subscriber = subscriber_create(
        email="ada@example.com", symbols=["AAPL", "MSFT"], status="active", holdings={"AAPL": D(1), "MSFT": D(2)}
    )
    subscriber_set_tickers(subscriber=subscriber, symbols=["MSFT", "KO"])
    assert holdings_of(subscriber) == {"MSFT": D(2)}


@pytest.mark.django_db
def test_export_includes_the_holdings_and_erase_removes_them():
    subscriber = subscriber_create(
        email="ada@example.com", symbols=["AAPL", "MSFT"], status="active", holdings={"AAPL": D("2.5")}
    )
    exported = json.loads(json.dumps(subscriber_export(subscriber=subscriber)))
    assert exported["holdings"] == {"AAPL": "2.5"}
    subscriber_erase(subscriber=subscriber)
    assert not Holding.objects.exists()


@pytest.mark.django_db
def test_delivery_reads_every_subscribers_tickers_and_holdings_in_one_query():
    ids = [
        subscriber_create(
            email=f"r{i}@example.com", symbols=["AAPL", "MSFT"], status="active", holdings={"AAPL": D(i + 1)}
        ).pk
        for i in range(5)
    ]
    plain = subscriber_create(email="p@example.com", symbols=["KO"], status="active").pk
    with CaptureQueriesContext(connection) as captured:
        symbols, holdings = follows_by_subscriber([*ids, plain])
    assert len(captured) == 1
    assert symbols[ids[2]] == ["AAPL", "MSFT"] and holdings[ids[2]] == {"AAPL": D(3)}
    assert symbols[plain] == ["KO"] and plain not in holdings


@pytest.mark.django_db
def test_the_admin_shows_holdings_and_unticking_a_ticker_there_drops_its_holding(admin_client):
    subscriber = subscriber_create(
        email="ada@example.com", symbols=["AAPL", "MSFT"], status="active", holdings={"AAPL": D("2.5"), "MSFT": D(4)}
    )
    listing = admin_client.get(reverse("admin:subscriptions_subscriber_changelist")).content.decode()
    assert "AAPL: 2.5, MSFT: 4" in listing
    change_url = reverse("admin:subscriptions_subscriber_change", args=[subscriber.pk])
    assert "AAPL: 2.5, MSFT: 4" in admin_client.get(change_url).content.decode()
    msft = Ticker.objects.get(symbol="MSFT")
    response = admin_client.post(
        change_url, {"email": subscriber.email, "status": "active", "tickers": [msft.pk], "soft_bounces": 0}
    )
    assert response.status_code == 302
    assert holdings_of(subscriber) == {"MSFT": D(4)}


# -- the demo ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_demo_seeds_holdings_and_its_email_shows_the_portfolio_line(outbox, trading_day):
    call_command("seed_demo", "--quiet")
    ada = Subscriber.objects.get(email="ada@example.com")
    assert holdings_of(ada) == DEMO_HOLDINGS["ada@example.com"]
    call_command("run_daily", "--date", trading_day.isoformat())
    bodies = {p.read_text(errors="replace") for p in outbox.glob("*.eml")}
    with_line = [b for b in bodies if "Portfolio $" in b]
    assert len(with_line) == len(DEMO_HOLDINGS), "only the demo subscribers with holdings get the line"


@pytest.mark.django_db
def test_the_email_sent_carries_the_same_figures_as_its_snapshots(outbox, trading_day):
    """End to end: the line in the sent email is the arithmetic of the snapshots the issue was built from."""
    holdings = {"AAPL": D(3), "MSFT": D("1.5")}
    ann = subscriber_create(email="ann@example.com", symbols=["AAPL", "MSFT", "KO"], status="active", holdings=holdings)
    call_command("run_daily", "--date", trading_day.isoformat())
    snapshots = ticker_snapshots(["AAPL", "MSFT", "KO"], trading_day)
    expected = portfolio_lines(portfolio_compute(snapshots=snapshots, holdings=holdings))[1]
    (path,) = outbox.glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    text = message.get_body(("plain",)).get_content()
    assert expected in text
    value = D(3) * D(repr(snapshots["AAPL"].close)) + D("1.5") * D(repr(snapshots["MSFT"].close))
    assert f"Portfolio ${value.quantize(D('0.01'), rounding=ROUND_HALF_UP):,.2f} " in text
    assert expected in preview_email(subscriber=ann, day=trading_day).text, "staff's preview shows the same line"
