"""Tickers, their daily price history, and the local copy of the shared tables."""

from django.db import models
from django.db.models.functions import Upper

from .providers.base import EVENT_KINDS


class Ticker(models.Model):
    symbol = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    last_bar_date = models.DateField(null=True, blank=True, help_text="Date of the latest stored daily bar.")
    published_through = models.DateField(
        null=True,
        blank=True,
        help_text="Bars up to this date are in the shared ticker-data table; empty: the whole series is to publish.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=models.Q(symbol=Upper("symbol")), name="ticker_symbol_upper_case"),
        ]

    def __str__(self) -> str:
        return self.symbol

    def save(self, *args, **kwargs) -> None:
        self.symbol = self.symbol.strip().upper()
        super().save(*args, **kwargs)


class DailyBar(models.Model):
    """One adjusted daily bar: the history indicators are computed from."""

    ticker = models.ForeignKey(Ticker, on_delete=models.CASCADE, related_name="bars")
    date = models.DateField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField()
    vwap = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=32)
    flagged = models.CharField(max_length=200, blank=True, help_text="Why staff should look at this bar, if at all.")

    class Meta:
        ordering = ["ticker", "date"]
        constraints = [models.UniqueConstraint(fields=["ticker", "date"], name="daily_bar_unique_ticker_date")]
        indexes = [models.Index(fields=["date"])]

    def __str__(self) -> str:
        return f"{self.ticker_id} {self.date} {self.close}"


class SharedTickerData(models.Model):
    """The `ticker-data-{stage}` shared table, kept in the local database (the embedded default)."""

    ticker = models.CharField(max_length=16)
    date = models.CharField(max_length=10)
    attributes = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ticker", "date"], name="shared_ticker_data_key")]
        verbose_name_plural = "shared ticker data"

    def __str__(self) -> str:
        return f"{self.ticker} {self.date}"


class SharedTickerAnalysis(models.Model):
    """The `ticker-analyses-{stage}` shared table, kept in the local database (the embedded default)."""

    ticker = models.CharField(max_length=16)
    sort_key = models.CharField(max_length=200, help_text="date#model#promptVersion")
    attributes = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ticker", "sort_key"], name="shared_ticker_analysis_key")]
        verbose_name_plural = "shared ticker analyses"

    def __str__(self) -> str:
        return f"{self.ticker} {self.sort_key}"


class ListedTicker(models.Model):
    """One row of the ticker directory: every listed US stock and its name, replaced in bulk once a day.

    Ticker search and the forms' symbol check read only this table, so a visitor's typing never spends the market
    data budget the daily job needs, and keeps working while the provider is down.
    """

    symbol = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=32, help_text="The provider that listed it (demo, polygon).")
    refreshed_at = models.DateTimeField(db_index=True, help_text="When the refresh that listed it ran.")

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=models.Q(symbol=Upper("symbol")), name="listed_ticker_symbol_upper_case"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.name}"


class TickerEvent(models.Model):
    """A followed ticker's dated event in the coming sessions (a dividend, a split, earnings), as the provider
    listed it. Every data stage replaces the window it fetched: what the provider no longer lists (a cancelled
    dividend) is gone."""

    symbol = models.CharField(max_length=16)
    kind = models.CharField(max_length=16, choices=[(kind, kind.replace("_", " ")) for kind in EVENT_KINDS])
    date = models.DateField()
    amount = models.FloatField(null=True, blank=True, help_text="Cash per share, for a dividend.")
    ratio = models.CharField(max_length=32, blank=True, help_text='"4-for-1", for a split.')
    source = models.CharField(max_length=32, help_text="The provider that listed it (demo, polygon).")
    refreshed_at = models.DateTimeField(help_text="When the refresh that listed it ran.")

    class Meta:
        ordering = ["date", "symbol", "kind"]
        constraints = [models.UniqueConstraint(fields=["symbol", "kind", "date"], name="ticker_event_key")]
        indexes = [models.Index(fields=["date"])]

    def __str__(self) -> str:
        return f"{self.symbol} {self.kind} {self.date}"


class NewsArticle(models.Model):
    """One news article about followed tickers, as the provider listed it (no personal data: nothing to erase)."""

    # A CharField: the provider's links are stored as given, never validated or rewritten by a form.
    url = models.CharField(max_length=1000, unique=True)
    title = models.CharField(max_length=500)
    title_key = models.CharField(
        max_length=500,
        db_index=True,
        help_text="The title casefolded, without punctuation or spaces: near-twins match.",
    )
    publisher = models.CharField(max_length=200, blank=True)
    published_at = models.DateTimeField(db_index=True)
    source = models.CharField(max_length=32, help_text="The provider that listed it (demo, polygon).")
    fetched_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-published_at"]

    def __str__(self) -> str:
        return self.title


class NewsMention(models.Model):
    """A followed ticker an article is about, with the provider's sentiment for it and how much it is the subject."""

    article = models.ForeignKey(NewsArticle, on_delete=models.CASCADE, related_name="mentions")
    ticker = models.ForeignKey(Ticker, on_delete=models.CASCADE, related_name="news_mentions")
    sentiment = models.CharField(max_length=16, blank=True)
    sentiment_reasoning = models.TextField(blank=True)
    relevance = models.PositiveSmallIntegerField(
        default=0,
        help_text="How much the ticker is the article's subject: one each for being its first ticker, having the "
        "provider's insight, and being named in the title.",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["article", "ticker"], name="news_mention_unique")]

    def __str__(self) -> str:
        return f"{self.ticker_id} {self.article_id}"


class NewsFetch(models.Model):
    """The news of one session was fetched for these tickers: a rerun fetches only for tickers followed since."""

    session = models.DateField(unique=True)
    symbols = models.JSONField(default=list)
    how = models.CharField(max_length=16, help_text="listing, by_ticker or embedded")
    requests = models.PositiveIntegerField(default=0)
    articles = models.PositiveIntegerField(default=0, help_text="Articles about followed tickers stored.")
    fetched_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-session"]

    def __str__(self) -> str:
        return f"news of {self.session}"
