"""Staff preview of any subscriber's email, "view in browser" of a sent one, and "send me the latest issue now"."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from urllib.parse import quote

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from subscriptions import tokens
from subscriptions.models import Subscriber

from .archive import archive_read_html, archive_read_inline_image
from .jobs import AlreadyReceived, TooManyRequests, send_job_create
from .links import read_view_token
from .models import Delivery, SendJob
from .preview import preview_email
from .services import NothingToSend

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


# -- "send me the latest issue now" ---------------------------------------------------------------------------


@never_cache
@require_POST
def send_now(request: HttpRequest, token: str) -> HttpResponse:
    """Queue the latest issue for the subscriber whose preferences token this is, then show the job's progress."""
    try:
        subscriber = Subscriber.objects.filter(pk=tokens.read_token(tokens.PREFERENCES, token)).first()
    except tokens.BadToken:
        subscriber = None
    if subscriber is None:
        return render(request, "subscriptions/invalid_link.html", status=404)
    context = {
        "subscriber": subscriber,
        "preferences_url": reverse("subscriptions:preferences", args=[token]),
    }
    try:
        job = send_job_create(subscriber=subscriber, again=request.POST.get("again") == "1", source="page")
    except AlreadyReceived as exc:
        return render(request, "newsletters/send_now.html", {**context, "message": str(exc), "already": True})
    except TooManyRequests as exc:
        return render(request, "newsletters/send_now.html", {**context, "message": str(exc)}, status=429)
    except NothingToSend as exc:
        return render(request, "newsletters/send_now.html", {**context, "message": str(exc)}, status=400)
    return redirect("newsletters:send-job", job.token)


def job_message(job: SendJob) -> str:
    if job.status == SendJob.Status.SENT:
        return f"The issue of {job.day:%b} {job.day.day} is in your inbox" + (
            f" ({job.reason})." if job.reason else "."
        )
    if job.status == SendJob.Status.FAILED:
        return f"Not sent: {job.reason}"
    return f"Preparing the issue of {job.day:%b} {job.day.day} …"


@never_cache
@require_GET
def send_job(request: HttpRequest, job_token: uuid.UUID) -> HttpResponse:
    job = get_object_or_404(SendJob, token=job_token)
    return render(request, "newsletters/send_now.html", {"job": job, "message": job_message(job)})


@never_cache
@require_GET
def send_job_status(request: HttpRequest, job_token: uuid.UUID) -> JsonResponse:
    """What the page polls: the job's state, never the address."""
    job = get_object_or_404(SendJob, token=job_token)
    return JsonResponse(
        {
            "status": job.status,
            "label": job.get_status_display(),
            "message": job_message(job),
            "reason": job.reason,
            "day": job.day.isoformat(),
            "created_at": job.created_at.isoformat(),
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        }
    )
