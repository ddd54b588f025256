"""Staff preview of any subscriber's email, and "view in browser" of a sent one."""

from __future__ import annotations

import datetime as dt

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.cache import never_cache

from subscriptions.models import Subscriber

from .archive import archive_read_html
from .links import read_view_token
from .models import Delivery
from .preview import preview_email


@never_cache
@staff_member_required
def preview(request: HttpRequest, subscriber_id: int, date: str) -> HttpResponse:
    """The email exactly as it was sent (from the archive), or as it would be sent today (rendered now)."""
    subscriber = get_object_or_404(Subscriber, pk=subscriber_id)
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise Http404("not a date") from None
    delivery = (
        Delivery.objects.filter(issue__date=day, subscriber=subscriber, status=Delivery.Status.SENT)
        .exclude(archive_key="")
        .first()
    )
    if delivery:
        return HttpResponse(archive_read_html(delivery.archive_key))
    fmt = request.GET.get("format", "html")
    composed = preview_email(subscriber=subscriber, day=day)
    if fmt == "text":
        return HttpResponse(composed.text, content_type="text/plain; charset=utf-8")
    return HttpResponse(composed.html)


def view_in_browser(request: HttpRequest, token: str) -> HttpResponse:
    delivery_token = read_view_token(token)
    if not delivery_token:
        raise Http404("invalid link")
    delivery = Delivery.objects.filter(token=delivery_token).exclude(archive_key="").first()
    if delivery is None:
        raise Http404("no such email")
    response = HttpResponse(archive_read_html(delivery.archive_key))
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Robots-Tag"] = "noindex"
    return response
