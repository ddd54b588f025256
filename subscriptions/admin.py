from django.contrib import admin

from .models import Subscriber


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ["email", "status", "ticker_list", "created_at", "confirmed_at", "unsubscribed_at"]
    list_filter = ["status", "created_at", "tickers"]
    search_fields = ["email", "tickers__symbol"]
    filter_horizontal = ["tickers"]
    readonly_fields = ["created_at", "confirmed_at", "unsubscribed_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tickers")

    @admin.display(description="Tickers")
    def ticker_list(self, obj: Subscriber) -> str:
        return ", ".join(t.symbol for t in obj.tickers.all())
