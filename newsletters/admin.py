from django.contrib import admin, messages
from django.db.models import Count, Q
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html

from .jobs import send_job_create
from .links import view_url
from .models import Analysis, AnalystCall, DailyRun, Delivery, Issue, SendJob
from .services import NothingToSend, deliveries_resend, preview_send

# Staff actions send synchronously from the request: keep each one small.
RESEND_LIMIT = 200
TEST_COPY_LIMIT = 10


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin):
    list_display = ["date", "demo", "sent", "failed", "pending", "in_flight", "skipped", "deliveries_link"]
    list_filter = ["demo"]
    date_hierarchy = "date"

    def get_queryset(self, request):
        def count(*statuses: str) -> Count:
            return Count("deliveries", filter=Q(deliveries__status__in=statuses))

        return (
            super()
            .get_queryset(request)
            .annotate(
                n_sent=count("sent"),
                n_failed=count("failed"),
                n_pending=count("pending"),
                n_in_flight=count("sending"),
                n_skipped=count("skipped"),
            )
        )

    @admin.display(ordering="n_sent")
    def sent(self, obj: Issue) -> int:
        return obj.n_sent

    @admin.display(ordering="n_failed")
    def failed(self, obj: Issue) -> int:
        return obj.n_failed

    @admin.display(ordering="n_pending")
    def pending(self, obj: Issue) -> int:
        return obj.n_pending

    @admin.display(ordering="n_in_flight", description="In flight (ambiguous)")
    def in_flight(self, obj: Issue) -> int:
        return obj.n_in_flight

    @admin.display(ordering="n_skipped")
    def skipped(self, obj: Issue) -> int:
        return obj.n_skipped

    @admin.display(description="Deliveries")
    def deliveries_link(self, obj: Issue):
        url = reverse("admin:newsletters_delivery_changelist") + f"?issue__date={obj.date.isoformat()}"
        return format_html('<a href="{}">deliveries</a>', url)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "issue",
        "email",
        "status",
        "feedback",
        "attempts",
        "sent_at",
        "failure",
        "preview_link",
        "archive_link",
    ]
    list_filter = ["status", "feedback", "issue__date", "retryable"]
    search_fields = ["email", "subscriber__email", "message_id", "token"]
    list_select_related = ["issue", "subscriber"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    actions = ["resend", "send_test_copy_to_me", "preview"]

    def changelist_view(self, request, extra_context=None):
        # Counts per status for what the filters select (an issue date, typically), above the list.
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            counts = dict(
                changelist.queryset.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n")
            )
            response.context_data["status_counts"] = [
                (label, counts.get(value, 0)) for value, label in Delivery.Status.choices
            ]
        return response

    @admin.display(description="Failure reason")
    def failure(self, obj: Delivery) -> str:
        return obj.error[:200] if obj.status in (Delivery.Status.FAILED, Delivery.Status.SKIPPED) else ""

    @admin.display(description="Email")
    def preview_link(self, obj: Delivery):
        if not obj.subscriber_id:
            return "—"
        url = reverse("newsletters:preview", args=[obj.subscriber_id, obj.issue.date.isoformat()])
        return format_html('<a href="{}" target="_blank">preview</a>', url)

    @admin.display(description="Archive")
    def archive_link(self, obj: Delivery):
        if not obj.archive_key:
            return "—"
        return format_html('<a href="{}" target="_blank">archived copy</a>', view_url(str(obj.token)))

    @admin.action(description="Resend selected deliveries now")
    def resend(self, request, queryset):
        chosen = list(queryset.select_related("issue", "subscriber")[:RESEND_LIMIT])
        if len(chosen) < queryset.count():
            self.message_user(request, f"Resending the first {RESEND_LIMIT} only.", messages.WARNING)
        for day, stage in deliveries_resend(deliveries=chosen).items():
            level = messages.SUCCESS if not stage.failed and not stage.stopped else messages.WARNING
            detail = f"; stopped: {stage.stopped}" if stage.stopped else ""
            self.message_user(
                request, f"{day}: {stage.sent} sent, {stage.failed} failed, {stage.skipped} skipped{detail}", level
            )

    @admin.action(description="Send me a test copy of the selected emails")
    def send_test_copy_to_me(self, request, queryset):
        if not request.user.email:
            self.message_user(request, "Your staff account has no email address to send the copy to.", messages.ERROR)
            return
        sent = 0
        for delivery in queryset.select_related("issue", "subscriber")[:TEST_COPY_LIMIT]:
            if delivery.subscriber is None:
                continue
            preview_send(subscriber=delivery.subscriber, day=delivery.issue.date, to=request.user.email)
            sent += 1
        self.message_user(request, f"Sent {sent} test copies to {request.user.email}.", messages.SUCCESS)

    @admin.action(description="Preview the selected email")
    def preview(self, request, queryset):
        delivery = queryset.select_related("issue").exclude(subscriber=None).first()
        if delivery is None:
            self.message_user(request, "The selected deliveries have no subscriber left to preview.", messages.ERROR)
            return None
        return redirect("newsletters:preview", delivery.subscriber_id, delivery.issue.date.isoformat())


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


@admin.register(SendJob)
class SendJobAdmin(admin.ModelAdmin):
    """Staff's "send now": adding a job here goes through the same job path as the subscriber's button."""

    list_display = ["token", "subscriber", "day", "source", "again", "status", "reason", "created_at", "finished_at"]
    list_filter = ["status", "source", "day"]
    fields = ["subscriber", "day", "again"]
    autocomplete_fields = ["subscriber"]
    search_fields = ["token"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in SendJob._meta.fields] if obj else []

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        try:
            job = send_job_create(subscriber=obj.subscriber, day=obj.day, again=obj.again, source="admin")
        except NothingToSend as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk, obj.token, obj.status = job.pk, job.token, job.status
        self.message_user(request, f"Send job {job.token}: {job.get_status_display().lower()}.", messages.SUCCESS)
