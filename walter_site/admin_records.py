"""Admin pages for records: what the system wrote down is shown, never added or edited by hand."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join


class RecordAdmin(admin.ModelAdmin):
    """No Add button, no Save buttons: the page shows the record; staff act through the admin actions."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def seconds_table(durations: dict | None) -> str:
    """A small two-column table (stage, seconds) instead of raw JSON."""
    if not durations:
        return "—"
    rows = format_html_join(
        "",
        '<tr><th scope="row">{}</th><td style="text-align:right">{}</td></tr>',
        ((name, f"{float(seconds):.1f} s") for name, seconds in durations.items()),
    )
    total = sum(float(seconds) for seconds in durations.values())
    return format_html(
        '<table class="walter-durations"><tbody>{}</tbody><tfoot><tr><th scope="row">total</th>'
        '<td style="text-align:right">{}</td></tr></tfoot></table>',
        rows,
        f"{total:.1f} s",
    )
