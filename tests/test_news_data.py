"""The session's news, data side: fetched with the fewest requests, stored once each, the top 3 per ticker chosen.

Polygon through the real `massive` client against the fake server (`/v2/reference/news` in the recorded shape, with
`insights` and `next_url` pages); the demo provider's labelled headlines; the daily job going on without news.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.urls import reverse

from markets import calendar
from markets.models import NewsArticle, NewsFetch, NewsMention
from markets.news import Candidate, dedupe, relevance, short_name, title_key, top_news
from markets.providers import Article, ArticleInsight, ProviderError
from markets.providers.base import news_request_plan
from markets.providers.demo import DEMO_PUBLISHER, DemoProvider
from markets.providers.polygon import PolygonProvider
from markets.selectors import session_news, ticker_snapshots
from markets.services import session_news_update, ticker_ensure
from markets.snapshots import NewsItem
from newsletters.models import DailyRun
from subscriptions.selectors import followed_symbols
from tests.fakes.polygon_server import FakePolygon, Reply, polygon_configured

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")
DAY = dt.date(2026, 11, 20)  # a Friday
MONDAY = dt.date(2026, 11, 23)
START, END = calendar.news_window(DAY)
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "polygon" / "v2_reference_news.json"


@pytest.fixture
def server(settings):
    with polygon_configured(settings, retries=1, POLYGON_CONNECT_TIMEOUT=0.5, POLYGON_READ_TIMEOUT=0.5) as fake:
        yield fake


@pytest.fixture
def provider(server):
    return PolygonProvider(sleep=lambda s: None)


def symbols(count: int) -> list[str]:
    return [f"T{i:04d}" for i in range(count)]


def busy_market(server: FakePolygon, followed: list[str], articles: int = 2500) -> None:
    """``articles`` articles spread over the window, every third about a followed ticker, plus some outside it."""
    step = (END - START) / (articles + 1)
    for i in range(articles):
        about = [followed[i % len(followed)]] if i % 3 == 0 else [f"OTHER{i % 50}"]
        server.add_news(f"Story {i}", about, START + step * (i + 1), url=f"https://news.example/story-{i}")
    server.add_news("Too early", followed[:1], START, url="https://news.example/early")
    server.add_news("Too late", followed[:1], END + dt.timedelta(seconds=1), url="https://news.example/late")


def article(url: str, title: str, tickers: tuple[str, ...], minutes: int, **kwargs) -> Article:
    return Article(
        url=url,
        title=title,
        publisher=kwargs.pop("publisher", "Benzinga"),
        published_at=END - dt.timedelta(minutes=minutes),
        tickers=tickers,
        **kwargs,
    )


# -- the window and the plan -------------------------------------------------------------------------------


def test_the_window_runs_from_the_previous_close_to_this_close_in_new_york():
    assert START == dt.datetime(2026, 11, 19, 16, tzinfo=NEW_YORK) and END == dt.datetime(
        2026, 11, 20, 16, tzinfo=NEW_YORK
    )
    assert END.astimezone(dt.UTC).hour == 21  # EST
    monday_start, monday_end = calendar.news_window(MONDAY)
    assert monday_start == END and monday_end.date() == MONDAY  # the weekend's news counts for Monday
    summer_start, summer_end = calendar.news_window(dt.date(2026, 7, 6))  # after the July 3 holiday (observed)
    assert summer_start.date() == dt.date(2026, 7, 2) and summer_end.astimezone(dt.UTC).hour == 20  # EDT


def test_the_plan_takes_the_fewer_requests_of_the_listing_and_one_per_ticker(provider):
    assert news_request_plan(followed=2000, listing_pages=3) == ("listing", 3)
    assert news_request_plan(followed=2, listing_pages=3) == ("by_ticker", 2)
    assert news_request_plan(followed=0, listing_pages=3) == ("by_ticker", 0)
    weekday = provider.news_plan(start=START, end=END, symbols=symbols(20))
    assert (weekday.how, weekday.requests) == ("listing", 2)
    weekend = provider.news_plan(start=END, end=calendar.news_window(MONDAY)[1], symbols=symbols(20))
    assert (weekend.how, weekend.requests) == ("listing", 6)  # three days of the market's news
    assert provider.news_plan(start=START, end=END, symbols=["AAPL"]).how == "by_ticker"
    assert weekday.seconds == pytest.approx(2 * 60 / 600_000)


# -- Polygon: requests counted -----------------------------------------------------------------------------


@pytest.mark.parametrize("followed", [20, 2000])
def test_the_market_listing_takes_the_same_few_pages_for_20_or_2000_tickers(server, provider, followed):
    wanted = symbols(followed)
    busy_market(server, wanted)

    found = provider.news(start=START, end=END, symbols=wanted)

    # 2,500 articles in the window: three pages of 1,000, whatever the number of followed tickers.
    assert server.count("/v2/reference/news") == 3 == provider.requests
    first = server.requests[0].query
    assert "ticker" not in first and first["limit"] == ["1000"]
    assert first["published_utc.gt"] == ["2026-11-19T21:00:00Z"] and first["published_utc.lte"] == [
        "2026-11-20T21:00:00Z"
    ]
    assert all(set(r.query) == {"cursor"} for r in server.requests[1:])  # pages follow next_url alone
    assert len(found) == len({a.url for a in found}) == 834  # every third of 2,500, each once
    assert all(set(a.tickers) & set(wanted) for a in found)
    assert "https://news.example/early" not in {a.url for a in found}
    assert "https://news.example/late" not in {a.url for a in found}
    assert [a.published_at for a in found] == sorted((a.published_at for a in found), reverse=True)


def test_a_ticker_or_two_take_one_request_each(server, provider):
    busy_market(server, ["AAPL", "MSFT"])

    found = provider.news(start=START, end=END, symbols=["AAPL", "MSFT"])

    assert server.count("/v2/reference/news") == 2
    assert sorted(r.query["ticker"][0] for r in server.requests) == ["AAPL", "MSFT"]
    assert len(found) == 834 and {t for a in found for t in a.tickers} == {"AAPL", "MSFT"}


def test_the_recorded_answer_is_read_with_its_insight_and_its_next_url_followed(server, provider):
    server.script("/v2/reference/news", Reply(body=json.loads(FIXTURE.read_text())))

    (found,) = provider.news(start=START, end=END, symbols=["UBS"])

    assert server.count("/v2/reference/news") == 2 and "cursor" in server.requests[1].query
    assert found.url.startswith("https://uk.investing.com/news/") and found.publisher == "Investing.com"
    assert found.published_at == dt.datetime(2024, 6, 24, 18, 33, 53, tzinfo=dt.UTC)
    assert found.tickers == ("UBS",)
    assert found.insight("UBS").sentiment == "positive"
    assert found.insight("UBS").reasoning.startswith("UBS analysts are providing a bullish outlook")


@pytest.mark.parametrize(("mode", "reason"), [("500", "HTTP 500"), ("garbage", "malformed JSON")])
def test_a_page_failing_mid_listing_fails_the_listing_rather_than_cut_it_short(server, provider, mode, reason):
    server.script("/v2/reference/news", Reply(body=json.loads(FIXTURE.read_text())))  # page 1, with a next_url
    server.fault("/v2/reference/news", mode)
    with pytest.raises(ProviderError, match=reason):
        provider.news(start=START, end=END, symbols=["UBS"])


# -- dedupe and the top 3 ----------------------------------------------------------------------------------


def test_near_twin_titles_and_the_same_link_are_one_article_keeping_the_first_and_every_ticker():
    original = article("https://a.example/1", "Apple's iPhone sales rise!", ("AAPL",), 60)
    syndicated = article("https://b.example/9", "APPLES IPHONE  SALES RISE", ("AAPL", "QCOM"), 30, publisher="Zacks")
    relisted = article(
        "https://a.example/1",
        "Apple's iPhone sales rise",
        ("AAPL", "TSM"),
        60,
        insights=(ArticleInsight("TSM", "neutral"),),
    )
    other = article("https://c.example/2", "Apple's iPad sales rise", ("AAPL",), 10)

    blank = article("https://d.example/3", "!!!", ("AAPL",), 5)
    blank_too = article("https://d.example/4", "???", ("AAPL",), 4)

    kept = dedupe([syndicated, other, relisted, original, blank, blank_too])

    assert title_key(original.title) == title_key(syndicated.title) != title_key(other.title)
    assert sorted(a.url for a in kept) == [
        "https://a.example/1",
        "https://c.example/2",
        "https://d.example/3",
        "https://d.example/4",
    ]
    (merged,) = [a for a in kept if a.url == "https://a.example/1"]
    assert merged.publisher == "Benzinga" and set(merged.tickers) == {"AAPL", "QCOM", "TSM"}
    assert merged.insight("TSM").sentiment == "neutral"


def test_relevance_counts_first_ticker_insight_and_name_in_the_title():
    assert short_name("Apple Inc.") == "Apple" and short_name("JPMorgan Chase & Co.") == "JPMorgan Chase"
    assert short_name("Alphabet Inc. Class A") == "Alphabet"
    subject = article(
        "u1", "Apple unveils a new chip", ("AAPL", "QCOM"), 5, insights=(ArticleInsight("AAPL", "positive"),)
    )
    assert relevance(symbol="AAPL", name="Apple Inc.", article=subject) == 3
    assert relevance(symbol="QCOM", name="QUALCOMM Incorporated", article=subject) == 0
    by_symbol = article("u2", "Why QCOM moved today", ("AAPL", "QCOM"), 5)
    assert relevance(symbol="QCOM", name="QUALCOMM Incorporated", article=by_symbol) == 1
    assert relevance(symbol="V", name="Visa Inc.", article=article("u3", "V-shaped recovery ahead", ("V",), 5)) == 1


def test_the_top_three_are_the_subject_first_then_the_latest_then_another_publisher():
    def item(url: str, minutes: int, publisher: str = "Benzinga") -> NewsItem:
        return NewsItem(title=url, publisher=publisher, url=url, published_at=END - dt.timedelta(minutes=minutes))

    chosen = top_news(
        [
            Candidate(0, item("mentioned-latest", 1)),
            Candidate(2, item("subject-older", 300)),
            Candidate(2, item("subject-latest", 20)),
            Candidate(2, item("subject-same-publisher", 30)),
            Candidate(2, item("subject-other-publisher", 200, publisher="Zacks")),
            Candidate(1, item("named", 2)),
        ]
    )
    assert [n.url for n in chosen] == ["subject-latest", "subject-other-publisher", "subject-same-publisher"]
    assert [n.url for n in top_news([Candidate(0, item("a", 5)), Candidate(1, item("b", 50))])] == ["b", "a"]


# -- stored, once, and read for the snapshots ---------------------------------------------------------------


def test_the_session_news_is_stored_once_and_a_rerun_fetches_nothing(server, provider):
    followed = ["AAPL", "MSFT", "KO"]
    for symbol in followed:
        ticker_ensure(symbol=symbol, name={"AAPL": "Apple Inc."}.get(symbol, ""))
    first = server.add_news(
        "Apple beats estimates",
        ["AAPL", "MSFT"],
        END - dt.timedelta(hours=1),
        insights={"AAPL": ("positive", "Strong quarter.")},
    )
    server.add_news("APPLE BEATS ESTIMATES!", ["AAPL"], END - dt.timedelta(minutes=30), publisher="Zacks")  # a twin
    server.add_news("Microsoft and Apple talk", ["MSFT", "AAPL"], END - dt.timedelta(hours=2))
    server.add_news("Unrelated", ["XOM"], END - dt.timedelta(hours=3))

    update = session_news_update(day=DAY, symbols=followed, provider=provider)

    assert (update.how, update.requests, update.articles, update.error, update.skipped) == ("listing", 1, 2, "", "")
    assert sorted(NewsArticle.objects.values_list("title", flat=True)) == [
        "Apple beats estimates",
        "Microsoft and Apple talk",
    ]
    mention = NewsMention.objects.get(article__url=first["article_url"], ticker__symbol="AAPL")
    assert (mention.sentiment, mention.sentiment_reasoning, mention.relevance) == ("positive", "Strong quarter.", 3)
    assert NewsFetch.objects.get(session=DAY).symbols == sorted(followed)

    before = server.count()
    again = session_news_update(day=DAY, symbols=followed, provider=provider)
    assert server.count() == before and again.requests == 0 and NewsArticle.objects.count() == 2

    # A ticker followed since: only its news is fetched, one request, and what is stored is reused.
    ticker_ensure(symbol="XOM")
    later = session_news_update(day=DAY, symbols=[*followed, "XOM"], provider=provider)
    assert later.how == "by_ticker" and server.count() - before == 1
    assert server.requests[-1].query["ticker"] == ["XOM"] and NewsArticle.objects.count() == 3
    assert NewsFetch.objects.get(session=DAY).symbols == sorted([*followed, "XOM"])

    news = session_news(["AAPL", "MSFT", "KO"], DAY)
    assert [n.title for n in news["AAPL"]] == ["Apple beats estimates", "Microsoft and Apple talk"]
    assert news["AAPL"][0].sentiment == "positive" and news["MSFT"][0].title == "Microsoft and Apple talk"
    assert "KO" not in news
    assert session_news(["AAPL"], MONDAY) == {}  # another session's window


def test_the_snapshots_carry_at_most_three_articles_read_in_one_query(django_assert_num_queries):
    tickers = [ticker_ensure(symbol=s) for s in ("AAPL", "MSFT")]
    for i in range(5):
        stored = NewsArticle.objects.create(
            url=f"https://n.example/{i}",
            title=f"Story {i}",
            title_key=f"story{i}",
            publisher=f"P{i}",
            published_at=END - dt.timedelta(hours=i + 1),
            source="polygon",
        )
        for ticker in tickers:
            NewsMention.objects.create(article=stored, ticker=ticker, relevance=1 if i == 4 else 0)

    with django_assert_num_queries(1):
        news = session_news(["AAPL", "MSFT"], DAY)
    assert [n.title for n in news["MSFT"]] == ["Story 4", "Story 0", "Story 1"]

    snapshots = ticker_snapshots(["AAPL", "MSFT"], DAY)
    assert snapshots["AAPL"].news == news["AAPL"]
    override = (NewsItem(title="dry", publisher="x", url="https://d.example", published_at=END),)
    assert ticker_snapshots(["AAPL", "MSFT"], DAY, news={"AAPL": override})["AAPL"].news == override


def test_a_dry_run_stores_nothing_and_chooses_the_same_top_three(server, provider):
    ticker_ensure(symbol="AAPL")
    for i in range(5):
        server.add_news(f"Story {i}", ["AAPL"], END - dt.timedelta(hours=i + 1), publisher=f"P{i}")

    dry = session_news_update(day=DAY, symbols=["AAPL"], provider=provider, store=False)

    assert not NewsArticle.objects.exists() and not NewsFetch.objects.exists()
    assert [n.title for n in dry.chosen["AAPL"]] == ["Story 0", "Story 1", "Story 2"]
    session_news_update(day=DAY, symbols=["AAPL"], provider=provider)
    assert session_news(["AAPL"], DAY)["AAPL"] == dry.chosen["AAPL"]


def test_on_the_free_plan_news_is_skipped_with_a_note_and_nothing_is_sent(server):
    provider = PolygonProvider(requests_per_minute=5, sleep=lambda s: None)
    ticker_ensure(symbol="AAPL")

    update = session_news_update(day=DAY, symbols=["AAPL"], provider=provider)

    assert server.count("/v2/reference/news") == 0 and provider.requests == 0
    assert "skipped: 1 requests would take 12s" in update.skipped and "MARKET_NEWS_MAX_SECONDS" in update.skipped
    assert not update.error and not NewsFetch.objects.exists()


def test_a_news_outage_is_recorded_and_stores_nothing_so_a_rerun_tries_again(server, provider):
    ticker_ensure(symbol="AAPL")
    server.add_news("Apple story", ["AAPL"], END - dt.timedelta(hours=1))
    server.fault("/v2/reference/news", "500")

    update = session_news_update(day=DAY, symbols=["AAPL"], provider=provider)

    assert "could not be had" in update.error and "HTTP 500" in update.error
    assert update.requests == 2  # the first attempt and its one retry
    assert not NewsArticle.objects.exists() and not NewsFetch.objects.exists()
    server.heal()
    assert session_news_update(day=DAY, symbols=["AAPL"], provider=provider).articles == 1


# -- the demo's headlines ------------------------------------------------------------------------------------


def test_demo_headlines_are_labelled_deterministic_and_three_per_ticker():
    demo = DemoProvider()
    first = demo.news(start=START, end=END, symbols=["AAPL", "MSFT", "NOPE"])
    assert first == DemoProvider().news(start=START, end=END, symbols=["MSFT", "AAPL"])
    assert all(a.title.startswith("Demo: ") and a.publisher == DEMO_PUBLISHER for a in first)
    assert all(START < a.published_at <= END and a.url.startswith("https://") for a in first)
    assert len({a.url for a in first}) == len(first)
    own = [a for a in first if a.tickers == ("AAPL",)]
    assert len(own) == 3 and all(a.insight("AAPL").sentiment in {"positive", "neutral", "negative"} for a in own)
    assert demo.news_plan(start=START, end=END, symbols=["AAPL"]).requests == 0
    # Another session, other headlines; the weekend's window holds only Monday's.
    monday = demo.news(start=END, end=calendar.news_window(MONDAY)[1], symbols=["AAPL"])
    assert {a.url for a in monday}.isdisjoint({a.url for a in first}) and len(monday) == 4


# -- the daily job ----------------------------------------------------------------------------------------


def test_the_demo_run_stores_the_news_and_every_snapshot_shows_three_demo_headlines(trading_day):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat())

    run = DailyRun.objects.get(date=trading_day)
    assert run.status == DailyRun.Status.SUCCEEDED, run.errors
    followed = followed_symbols()
    snapshots = ticker_snapshots(followed, trading_day)
    for symbol in followed:
        titles = [n.title for n in snapshots[symbol].news]
        assert len(titles) == 3 and all(t.startswith("Demo: ") for t in titles)
        assert "roundup" not in " ".join(titles)  # the ticker's own headlines outrank the roundup naming it second
    assert NewsFetch.objects.get(session=trading_day).how == "embedded"


def test_a_dry_run_of_the_day_stores_no_news(trading_day):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat(), "--dry-run")
    assert not NewsArticle.objects.exists() and not NewsFetch.objects.exists()


def test_a_news_outage_still_sends_every_issue_without_news(server, outbox):
    call_command("seed_demo", "--quiet")
    server.add_random_walks(followed_symbols(), calendar.trading_days_ending(DAY, 430))
    server.fault("/v2/reference/news", "500")

    call_command("run_daily", "--date", DAY.isoformat())

    run = DailyRun.objects.get(date=DAY)
    assert run.status == DailyRun.Status.PARTIAL and "HTTP 500" in run.errors["news"]
    assert run.emails_sent == 5 and len(list(outbox.glob("*.eml"))) == 5
    assert not NewsArticle.objects.exists()


def test_news_beyond_the_budget_is_a_note_in_the_summary_and_the_run_succeeds(server, settings):
    # The free plan's pace would make the backfill wait in real time: a budget of nothing skips news the same way.
    settings.MARKET_NEWS_MAX_SECONDS = 0
    call_command("seed_demo", "--quiet")
    server.add_random_walks(followed_symbols(), calendar.trading_days_ending(DAY, 430))

    call_command("run_daily", "--date", DAY.isoformat(), "--stage", "data")

    run = DailyRun.objects.get(date=DAY)
    assert run.status == DailyRun.Status.SUCCEEDED, run.errors
    assert "news of 2026-11-20 skipped" in run.summary and "news" not in run.errors
    assert server.count("/v2/reference/news") == 0


# -- the admin ------------------------------------------------------------------------------------------------


def test_staff_read_the_articles_with_their_tickers_and_cannot_add_or_edit_them(admin_client):
    session_news_update(day=DAY, symbols=["AAPL", "MSFT"], provider=DemoProvider(), store=True)
    listing = admin_client.get(reverse("admin:markets_newsarticle_changelist") + "?q=AAPL").content.decode()
    assert "Demo: " in listing and DEMO_PUBLISHER in listing and "AAPL" in listing
    assert reverse("admin:markets_newsarticle_add") not in listing
    stored = NewsArticle.objects.filter(mentions__ticker__symbol="AAPL").exclude(mentions__sentiment="").first()
    page = admin_client.get(reverse("admin:markets_newsarticle_change", args=[stored.pk])).content.decode()
    assert "Demo sentiment" in page and 'name="_save"' not in page
    assert admin_client.get(reverse("admin:markets_newsarticle_add")).status_code == 403
