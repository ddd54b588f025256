"""Staff preview of any subscriber's email, and "view in browser" of a sent one."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.cache import never_cache

from subscriptions.models import Subscriber

from .archive import archive_read_html, archive_read_inline_image
from .links import read_view_token
from .models import Delivery
from .preview import preview_email

CID_SRC = re.compile(r'src="cid:([^"]+)"')


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


def _archived_delivery(token: str) -> Delivery:
    delivery_token = read_view_token(token)
    if not delivery_token:
        raise Http404("invalid link")
    delivery = Delivery.objects.filter(token=delivery_token).exclude(archive_key="").first()
    if delivery is None:
        raise Http404("no such email")
    return delivery


def view_in_browser(request: HttpRequest, token: str) -> HttpResponse:
    """The archived copy of a sent email, as sent; its inline charts come from the archived message itself."""
    delivery = _archived_delivery(token)
    try:
        html = archive_read_html(delivery.archive_key)
    except FileNotFoundError:
        raise Http404("this email is no longer archived") from None
    base = reverse("newsletters:view", args=[token])
    html = CID_SRC.sub(lambda m: f'src="{base}images/{quote(m.group(1), safe="@")}"', html)
    response = HttpResponse(html)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Robots-Tag"] = "noindex"
    return response


def view_image(request: HttpRequest, token: str, cid: str) -> HttpResponse:
    delivery = _archived_delivery(token)
    try:
        image = archive_read_inline_image(delivery.archive_key, cid)
    except FileNotFoundError:
        image = None
    if image is None:
        raise Http404("no such image")
    data, content_type = image
    response = HttpResponse(data, content_type=content_type)
    response["Cache-Control"] = "private, max-age=86400"
    response["X-Robots-Tag"] = "noindex"
    return response
