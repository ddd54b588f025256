from django.contrib import admin
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html

from .models import Analysis, AnalystCall, DailyRun, Delivery, Issue


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin):
    list_display = ["date", "demo", "sent", "failed", "pending", "created_at"]
    list_filter = ["demo"]
    date_hierarchy = "date"

    def get_queryset(self, request):
        status = "deliveries__status"
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_sent=Count("deliveries", filter=Q(**{status: "sent"})),
                n_failed=Count("deliveries", filter=Q(**{status: "failed"})),
                n_pending=Count("deliveries", filter=Q(**{f"{status}__in": ["pending", "sending"]})),
            )
        )

    @admin.display(ordering="n_sent")
    def sent(self, obj: Issue) -> int:
        return obj.n_sent

    @admin.display(ordering="n_failed")
    def failed(self, obj: Issue) -> int:
        return obj.n_failed

    @admin.display(ordering="n_pending", description="Pending / in flight")
    def pending(self, obj: Issue) -> int:
        return obj.n_pending


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["issue", "email", "status", "attempts", "sent_at", "error", "preview_link"]
    list_filter = ["status", "issue__date", "retryable"]
    search_fields = ["email", "subscriber__email", "message_id", "token"]
    list_select_related = ["issue", "subscriber"]
    readonly_fields = [f.name for f in Delivery._meta.fields]

    @admin.display(description="Email")
    def preview_link(self, obj: Delivery):
        if not obj.subscriber_id:
            return "—"
        url = reverse("newsletters:preview", args=[obj.subscriber_id, obj.issue.date.isoformat()])
        return format_html('<a href="{}" target="_blank">preview</a>', url)


class FellBackFilter(admin.SimpleListFilter):
    title = "fell back to rules"
    parameter_name = "fell_back"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(fallback_reason="")
        if self.value() == "no":
            return queryset.filter(fallback_reason="")
        return queryset


class AnalystCallInline(admin.StackedInline):
    """The audit trail: every request to the model behind this analysis, exactly as sent and received."""

    model = AnalystCall
    extra = 0
    can_delete = False
    fields = [
        "created_at",
        "outcome",
        "status",
        "response_format",
        "latency_ms",
        "input_tokens",
        "output_tokens",
        "error",
        "prompt",
        "raw_reply",
    ]
    readonly_fields = fields

    @admin.display(description="prompt")
    def prompt(self, call: AnalystCall) -> str:
        return "\n\n".join(f"[{m.get('role')}]\n{m.get('content')}" for m in call.messages)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Analysis)
class AnalysisAdmin(admin.ModelAdmin):
    list_display = [
        "ticker",
        "date",
        "model",
        "prompt_version",
        "stance",
        "score",
        "fell_back",
        "input_tokens",
        "output_tokens",
        "fallback_reason",
    ]
    list_filter = [FellBackFilter, "date", "stance", "automated", "model", "prompt_version"]
    search_fields = ["ticker__symbol", "headline"]
    list_select_related = ["ticker"]
    date_hierarchy = "date"
    inlines = [AnalystCallInline]
    readonly_fields = [f.name for f in Analysis._meta.fields]

    @admin.display(boolean=True, description="fell back")
    def fell_back(self, analysis: Analysis) -> bool:
        return bool(analysis.fallback_reason)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(DailyRun)
class DailyRunAdmin(admin.ModelAdmin):
    list_display = [
        "date",
        "status",
        "started_at",
        "finished_at",
        "tickers_updated",
        "tickers_failed",
        "analyses_created",
        "analyses_fallback",
        "emails_sent",
        "emails_failed",
        "emails_skipped",
        "estimated_cost_usd",
    ]
    list_filter = ["status", "dry_run", "date"]
    readonly_fields = [f.name for f in DailyRun._meta.fields]
    search_fields = ["summary"]
    change_list_template = "admin/newsletters/dailyrun/change_list.html"

    def get_urls(self):
        from functools import partial

        from django.urls import path

        from .admin_dashboard import dashboard_view

        view = self.admin_site.admin_view(partial(dashboard_view, model_admin=self))
        return [path("dashboard/", view, name="newsletters_dailyrun_dashboard"), *super().get_urls()]
