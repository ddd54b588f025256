from collections import defaultdict

from django.contrib import admin, messages
from django.db.models import Count

from walter_site.admin_records import RecordAdmin

from .models import (
    DailyBar,
    NewsArticle,
    NewsFetch,
    NewsMention,
    SharedTickerAnalysis,
    SharedTickerData,
    Ticker,
    TickerEvent,
)
from .providers import ProviderError
from .services import daily_bars_delete, ticker_history_refetch, ticker_series_republish


@admin.register(Ticker)
class TickerAdmin(admin.ModelAdmin):
    list_display = ["symbol", "name", "active", "last_bar_date", "follower_count"]
    list_filter = ["active", "last_bar_date"]
    search_fields = ["symbol", "name"]
    actions = ["refetch_history"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(followers=Count("subscribers", distinct=True))

    @admin.display(description="Followers", ordering="followers")
    def follower_count(self, obj: Ticker) -> int:
        return obj.followers

    @admin.action(description="Fetch the selected tickers' history again")
    def refetch_history(self, request, queryset) -> None:
        for ticker in queryset:
            try:
                update = ticker_history_refetch(symbol=ticker.symbol)
            except ProviderError as exc:
                self.message_user(request, f"{ticker.symbol}: {exc}", messages.ERROR)
                continue
            if ticker.symbol in update.failed:
                self.message_user(request, f"{ticker.symbol}: {update.failed[ticker.symbol]}", messages.ERROR)
            else:
                self.message_user(request, f"{ticker.symbol}: history fetched again and republished.")


class FlaggedFilter(admin.SimpleListFilter):
    title = "data quality"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", "Flagged"), ("no", "Not flagged")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(flagged="")
        if self.value() == "no":
            return queryset.filter(flagged="")
        return queryset


@admin.register(DailyBar)
class DailyBarAdmin(admin.ModelAdmin):
    list_display = ["ticker", "date", "open", "high", "low", "close", "volume", "source", "flagged"]
    list_filter = [FlaggedFilter, "source", "date"]
    search_fields = ["ticker__symbol"]
    list_select_related = ["ticker"]
    date_hierarchy = "date"
    actions = ["delete_and_recompute", "clear_flag"]

    def get_actions(self, request):
        # Deleting bars without recomputing would leave stale indicators in the shared table.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Delete the selected bars and recompute indicators", permissions=["delete"])
    def delete_and_recompute(self, request, queryset) -> None:
        dates_by_symbol = defaultdict(list)
        for symbol, date in queryset.values_list("ticker__symbol", "date"):
            dates_by_symbol[symbol].append(date)
        deleted = 0
        for symbol, dates in sorted(dates_by_symbol.items()):
            for date in dates:
                deleted += daily_bars_delete(symbol=symbol, start=date, end=date, republish=False).bars
            ticker_series_republish(symbol=symbol)
        self.message_user(
            request, f"Deleted {deleted} bars of {len(dates_by_symbol)} tickers; their indicators were recomputed."
        )

    @admin.action(description="Clear the data-quality flag (checked, the move is real)", permissions=["change"])
    def clear_flag(self, request, queryset) -> None:
        cleared = queryset.exclude(flagged="").update(flagged="")
        self.message_user(request, f"Cleared {cleared} flags.")


@admin.register(SharedTickerData)
class SharedTickerDataAdmin(RecordAdmin):
    list_display = ["ticker", "date"]
    search_fields = ["ticker"]
    list_filter = ["date"]


@admin.register(SharedTickerAnalysis)
class SharedTickerAnalysisAdmin(RecordAdmin):
    list_display = ["ticker", "sort_key"]
    search_fields = ["ticker", "sort_key"]


@admin.register(TickerEvent)
class TickerEventAdmin(RecordAdmin):
    list_display = ["symbol", "kind", "date", "amount", "ratio", "source", "refreshed_at"]
    list_filter = ["kind", "source", "date"]
    search_fields = ["symbol"]
    date_hierarchy = "date"


class NewsMentionInline(admin.TabularInline):
    model = NewsMention
    fields = ["ticker", "relevance", "sentiment", "sentiment_reasoning"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(NewsArticle)
class NewsArticleAdmin(RecordAdmin):
    list_display = ["published_at", "title", "publisher", "tickers", "source"]
    list_filter = ["source", "published_at"]
    search_fields = ["title", "publisher", "mentions__ticker__symbol"]
    date_hierarchy = "published_at"
    inlines = [NewsMentionInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("mentions__ticker")

    @admin.display(description="Followed tickers")
    def tickers(self, obj: NewsArticle) -> str:
        return ", ".join(sorted(m.ticker.symbol for m in obj.mentions.all()))


@admin.register(NewsFetch)
class NewsFetchAdmin(RecordAdmin):
    list_display = ["session", "how", "requests", "articles", "fetched_at"]
