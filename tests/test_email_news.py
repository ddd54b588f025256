"""The email's news lines and its headline and subject built from the analyst's phrases."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from django.core.mail import EmailMessage

from markets.snapshots import NewsItem
from newsletters.compose import SUBJECT_MAX, PersonalLinks, email_compose, issue_content_build, subject_line
from newsletters.models import Analysis
from tests.test_llm_analyst import DAY, snapshot

LINKS = PersonalLinks(view="https://w.example/v", preferences="https://w.example/p", unsubscribe="https://w.example/u")
# 21:12 UTC on the session day is 4:12 PM in New York (EST in November).
AFTER_CLOSE = dt.datetime(2026, 11, 20, 21, 12, tzinfo=dt.UTC)


def article(n: int, **overrides) -> NewsItem:
    values = {
        "title": f"Headline number {n}",
        "publisher": f"Publisher {n}",
        "url": f"https://news.example/story-{n}",
        "published_at": AFTER_CLOSE - dt.timedelta(hours=n),
    }
    values.update(overrides)
    return NewsItem(**values)


def analysis(phrase: str = "", **extra) -> Analysis:
    values = dict(
        date=DAY,
        model="m",
        prompt_version="v1",
        headline="A headline",
        summary="A summary citing [1].",
        stance="neutral",
        score=50,
        phrase=phrase,
    )
    return Analysis(**{**values, **extra})


def compose(snapshots: list, phrases: dict[str, str] | None = None, demo: bool = False):
    by_symbol = {s.symbol: s for s in snapshots}
    analyses = {symbol: analysis(phrase) for symbol, phrase in (phrases or {}).items()}
    if demo:
        by_symbol = {k: dataclasses.replace(v, demo=True) for k, v in by_symbol.items()}
    content = issue_content_build(day=DAY, snapshots=by_symbol, analyses=analyses, charts={})
    return email_compose(content=content, symbols=list(by_symbol), email="ann@example.com", links=LINKS)


def news_section(html: str) -> str:
    found = re.search(r'<div class="news".*?</div>', html, re.S)
    return found.group(0) if found else ""


# -- news ----------------------------------------------------------------------------------------------------------


def test_up_to_three_headlines_are_numbered_links_with_publisher_and_new_york_time():
    news = (article(1, published_at=AFTER_CLOSE), article(2), article(3), article(4))
    composed = compose([snapshot("NVDA", news=news)])

    section = news_section(composed.html)
    assert "In the news" in section
    links = re.findall(
        r'<span class="news-number"[^>]*>\[(\d)\]</span> <a [^>]*href="([^"]+)"[^>]*>([^<]+)</a>', section
    )
    assert links == [
        ("1", "https://news.example/story-1", "Headline number 1"),
        ("2", "https://news.example/story-2", "Headline number 2"),
        ("3", "https://news.example/story-3", "Headline number 3"),
    ]
    assert "Headline number 4" not in composed.html, "a card shows at most three articles"
    assert "Publisher 1 · 4:12 PM ET" in section
    assert "Publisher 2 · 2:12 PM ET" in section and "Publisher 3 · 1:12 PM ET" in section

    text = composed.text
    first, second = text.index("[1] Headline number 1"), text.index("[2] Headline number 2")
    assert first < second < text.index("[3] Headline number 3")
    assert "(Publisher 1 · 4:12 PM ET)\n    https://news.example/story-1" in text


def test_an_article_from_another_day_says_the_day():
    earlier = article(1, published_at=dt.datetime(2026, 11, 19, 14, 5, tzinfo=dt.UTC))
    composed = compose([snapshot("NVDA", news=(earlier,))])
    assert "Nov 19, 9:05 AM ET" in composed.text and "Nov 19, 9:05 AM ET" in composed.html


def test_titles_and_publishers_are_escaped():
    nasty = article(
        1,
        title='<img src=x onerror="alert(1)"> Q3 & "more"',
        publisher="<b>Wire</b>",
        url='https://news.example/a?b=1&c="><script>alert(1)</script>',
    )
    composed = compose([snapshot("NVDA", news=(nasty,))])
    section = news_section(composed.html)
    assert "<img" not in section and "<script" not in section and "<b>" not in section
    assert "&lt;img src=x onerror=" in section and "Q3 &amp;" in section and "&lt;b&gt;Wire&lt;/b&gt;" in section
    href = re.search(r'href="([^"]*)"', section).group(1)
    assert href == "https://news.example/a?b=1&amp;c=%22%3E%3Cscript%3Ealert(1)%3C/script%3E"
    assert "\n    https://news.example/a?b=1&c=%22%3E%3Cscript%3E" in composed.text


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,<b>x</b>", "/relative/story", "ftp://news.example/x", "https://"]
)
def test_a_link_that_is_not_http_is_shown_as_text_only(url):
    composed = compose([snapshot("NVDA", news=(article(1, url=url),))])
    section = news_section(composed.html)
    assert "Headline number 1" in section
    assert "<a " not in section and "href" not in section
    assert f"\n    {url}" not in composed.text


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_zero_to_three_items(count):
    composed = compose([snapshot("NVDA", news=tuple(article(n) for n in range(1, count + 1)))])
    section = news_section(composed.html)
    assert section.count('class="news-item"') == count
    assert composed.text.count("https://news.example/story-") == count
    assert ("In the news" in composed.html) == (count > 0)
    assert ("In the news" in composed.text) == (count > 0)


def test_a_title_with_line_breaks_stays_on_its_line_in_the_text_twin():
    composed = compose([snapshot("NVDA", news=(article(1, title="Split\nacross\r\nlines"),))])
    assert "[1] Split across lines (Publisher 1" in composed.text


def test_each_ticker_lists_its_own_news_under_its_own_card():
    composed = compose(
        [snapshot("AAPL", news=(article(1, title="Apple story"),)), snapshot("MSFT", news=(article(1, title="MS"),))]
    )
    assert composed.html.index("Apple story") < composed.html.index("MSFT Corporation") < composed.html.index(">MS<")


# -- headline and subject --------------------------------------------------------------------------------------------


def test_best_and_worst_movers_in_their_own_words():
    composed = compose(
        [snapshot("NVDA", change_pct=3.1), snapshot("KO", change_pct=0.2), snapshot("AAPL", change_pct=-1.4)],
        phrases={"NVDA": "hits a record", "KO": "edges up", "AAPL": "slips under its 50-day line"},
    )
    assert composed.subject == "Walter Nov 20: NVDA hits a record, AAPL slips under its 50-day line"
    assert "NVDA hits a record, AAPL slips under its 50-day line</h1>" in composed.html
    assert "\nNVDA hits a record, AAPL slips under its 50-day line\n" in composed.text


def test_when_both_phrases_do_not_fit_the_leader_just_leads():
    composed = compose(
        [snapshot("NVDA", change_pct=3.1), snapshot("AAPL", change_pct=-1.4)],
        phrases={"NVDA": "climbs above its 50-day line again", "AAPL": "slips under its 50-day line"},
    )
    assert composed.subject == "Walter Nov 20: NVDA leads, AAPL slips under its 50-day line"
    assert len(composed.subject) <= SUBJECT_MAX


def test_one_ticker_with_a_phrase():
    composed = compose([snapshot("NVDA", change_pct=2.0)], phrases={"NVDA": "climbs above its 50-day line"})
    assert composed.subject == "Walter Nov 20: NVDA climbs above its 50-day line"


def test_only_the_laggard_has_a_phrase():
    composed = compose(
        [snapshot("NVDA", change_pct=3.1), snapshot("AAPL", change_pct=-1.4)],
        phrases={"AAPL": "slips under its 50-day line"},
    )
    assert composed.subject == "Walter Nov 20: NVDA leads, AAPL slips under its 50-day line"


@pytest.mark.parametrize("phrases", [None, {"NVDA": "", "AAPL": ""}, {"MSFT": "is not followed by this reader"}])
def test_without_phrases_the_figures_template(phrases):
    composed = compose([snapshot("NVDA", change_pct=3.1), snapshot("AAPL", change_pct=-1.4)], phrases=phrases)
    assert composed.subject == "Walter Nov 20: NVDA leads with +3.1%, AAPL slips 1.4%"


def test_a_phrase_too_long_for_the_subject_falls_back_to_the_figures():
    long_phrase = "climbs far above its fifty-day line on volume"  # 45 characters, more than a phrase may hold
    composed = compose([snapshot("NVDA", change_pct=2.0)], phrases={"NVDA": long_phrase + " " + long_phrase})
    assert composed.subject == "Walter Nov 20: NVDA rises 2.0%"


@pytest.mark.parametrize("day", [dt.date(2026, 12, 2), dt.date(2026, 12, 31), dt.date(2026, 5, 9)])
def test_the_subject_never_passes_seventy_characters(day):
    snaps = [
        snapshot("GOOGL", date=day, as_of=day, change_pct=3.1),
        snapshot("BRK.B", date=day, as_of=day, change_pct=-1),
    ]
    phrases = {"GOOGL": "x" * 40, "BRK.B": "y" * 40}
    for lead in range(0, 41):
        for lag in range(0, 41, 5):
            trial = {"GOOGL": phrases["GOOGL"][:lead], "BRK.B": phrases["BRK.B"][:lag]}
            subject = subject_line(day, snaps, False, trial)
            assert len(subject) <= SUBJECT_MAX, subject
    assert subject_line(day, snaps, False, {"GOOGL": "rallies", "BRK.B": "dips"}).endswith("GOOGL rallies, BRK.B dips")


def test_a_stale_or_unavailable_ticker_never_leads_the_headline():
    stale = snapshot("NVDA", as_of=DAY - dt.timedelta(days=1), change_pct=9.0)
    unavailable = snapshot("TSLA", unavailable="timeout", close=None, change_pct=None)
    fresh = snapshot("AAPL", change_pct=-1.4)
    composed = compose(
        [stale, unavailable, fresh], phrases={"NVDA": "soars", "TSLA": "rockets", "AAPL": "slips under its 50-day line"}
    )
    assert composed.subject == "Walter Nov 20: AAPL slips under its 50-day line"
    only_stale = compose([stale, unavailable], phrases={"NVDA": "soars", "TSLA": "rockets"})
    assert only_stale.subject == "Walter Nov 20: No new market data for your tickers today"


def test_the_demo_marker_comes_first_and_does_not_count():
    composed = compose(
        [snapshot("NVDA", change_pct=3.1), snapshot("AAPL", change_pct=-1.4)],
        phrases={"NVDA": "hits a record", "AAPL": "slips under its 50-day line"},
        demo=True,
    )
    assert composed.subject == "[DEMO DATA] Walter Nov 20: NVDA hits a record, AAPL slips under its 50-day line"
    assert len(composed.subject.removeprefix("[DEMO DATA] ")) <= SUBJECT_MAX


@pytest.mark.parametrize(
    "evil", ["slips\nBcc: victim@example.com", "slips\r\nunder", "slips\u2028under", "\u202eslips"]
)
def test_a_phrase_never_carries_a_line_break_or_control_into_the_subject(evil):
    composed = compose([snapshot("AAPL", change_pct=-1.4)], phrases={"AAPL": evil})
    assert not re.search(r"[\r\n\u2028\u2029\u202e]", composed.subject)
    assert composed.subject.startswith("Walter Nov 20: AAPL slips")
    # Django refuses a header with a line break; the message builds and serialises.
    EmailMessage(subject=composed.subject, body="x", to=["ann@example.com"]).message().as_bytes()


def test_phrases_are_escaped_in_the_html_headline():
    composed = compose([snapshot("AAPL", change_pct=-1.4)], phrases={"AAPL": "<b>sinks</b> & more"})
    assert "AAPL &lt;b&gt;sinks&lt;/b&gt; &amp; more</h1>" in composed.html
    assert "<b>sinks</b>" not in composed.html
