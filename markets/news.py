"""News about tickers: near-twin titles, how much an article is about a ticker, and the top articles per ticker.

Pure functions: the daily update applies them to what the provider lists, the selectors to what is stored, so a dry
run and a real run choose the same headlines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .providers.base import Article, ArticleInsight
from .snapshots import NEWS_PER_TICKER, NewsItem

_NOT_WORD = re.compile(r"[\W_]+")
_COMPANY_SUFFIX = re.compile(
    r"[\s,]+(inc|incorporated|corp|corporation|company|co|ltd|limited|plc|sa|ag|nv|class [a-z]|the)\.?$", re.I
)


def title_key(title: str) -> str:
    """The title casefolded without punctuation or spaces: "Apple's iPhone sales rise!" and "APPLES IPHONE SALES
    RISE" are the same article, syndicated twice."""
    return _NOT_WORD.sub("", title.casefold())[:500]


def short_name(name: str) -> str:
    """A company's name as headlines write it: "Apple Inc." → "Apple", "JPMorgan Chase & Co." → "JPMorgan Chase"."""
    name = " ".join(name.split())
    while True:
        shorter = _COMPANY_SUFFIX.sub("", name).rstrip(" ,&")
        if shorter == name:
            return name
        name = shorter


def relevance(*, symbol: str, name: str, article: Article) -> int:
    """How much ``article`` is about ``symbol``, 0 to 3: one each for being its first (or only) ticker, for the
    provider's insight about it, and for being named in the title (its symbol as a word, or its company's name)."""
    score = int(bool(article.tickers) and article.tickers[0] == symbol)
    score += article.insight(symbol) is not None
    named = re.search(rf"(?<![\w.-]){re.escape(symbol)}(?![\w.-])", article.title) is not None
    company = short_name(name)
    score += named or (len(company) >= 3 and company.casefold() in article.title.casefold())
    return score


def dedupe(articles: Iterable[Article]) -> list[Article]:
    """One article per link and per near-twin title: the earliest one, with every ticker and insight of its twins
    (a syndicated copy may name tickers the original does not)."""
    kept: dict[str, Article] = {}  # by title key
    key_of_url: dict[str, str] = {}
    for article in sorted(articles, key=lambda a: (a.published_at, a.url)):
        # A title with no letters or digits twins nothing: its link stands for it.
        key = key_of_url.get(article.url) or title_key(article.title) or article.url
        twin = kept.get(key)
        key_of_url[article.url] = key
        if twin is None:
            kept[key] = article
            continue
        # The kept article's own reading of a ticker wins over its twin's.
        insights = {i.symbol: i for i in (*article.insights, *twin.insights)}
        kept[key] = Article(
            url=twin.url,
            title=twin.title,
            publisher=twin.publisher,
            published_at=twin.published_at,
            tickers=tuple(dict.fromkeys((*twin.tickers, *article.tickers))),
            insights=tuple(insights.values()),
        )
    return list(kept.values())


@dataclass(frozen=True)
class Candidate:
    relevance: int
    item: NewsItem


def news_item(article: Article, insight: ArticleInsight | None) -> NewsItem:
    return NewsItem(
        title=article.title,
        publisher=article.publisher,
        url=article.url,
        published_at=article.published_at,
        sentiment=insight.sentiment if insight else "",
        sentiment_reasoning=insight.reasoning if insight else "",
    )


def top_news(candidates: Sequence[Candidate], limit: int = NEWS_PER_TICKER) -> tuple[NewsItem, ...]:
    """The ``limit`` most relevant articles about one ticker: its subject first, then the most recent; a second
    article from a publisher already chosen yields to another publisher's of the same relevance, so the headlines
    are not all one outlet's."""
    ranked = sorted(candidates, key=lambda c: (-c.relevance, -c.item.published_at.timestamp(), c.item.url))
    chosen: list[Candidate] = []
    while ranked and len(chosen) < limit:
        tier = [c for c in ranked if c.relevance == ranked[0].relevance]
        publishers = {c.item.publisher for c in chosen}
        pick = next((c for c in tier if c.item.publisher not in publishers), tier[0])
        chosen.append(pick)
        ranked.remove(pick)
    return tuple(c.item for c in chosen)
