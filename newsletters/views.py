"""Staff preview of any subscriber's email, "view in browser" of a sent one (without its personal links), and
"send me the latest issue now"."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from html import unescape
from urllib.parse import quote, urlsplit

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from subscriptions import tokens
from subscriptions.links import absolute
from subscriptions.models import Subscriber

from .archive import CHART_SRC, CID_SRC, archive_read_html, archive_read_inline_image, archive_read_text
from .jobs import AlreadyReceived, TooManyRequests, send_job_create
from .links import read_view_token, view_token
from .models import Delivery, SendJob
from .preview import preview_email
from .services import NothingToSend

BODY_OPEN = re.compile(r"<body[^>]*>", re.IGNORECASE)


@never_cache
@staff_member_required
def preview(request: HttpRequest, subscriber_id: int, date: str) -> HttpResponse:
    """The email exactly as it was sent (from the archive), or as it would be sent today (rendered now)."""
    subscriber = get_object_or_404(Subscriber, pk=subscriber_id)
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise Http404("not a date") from None
    as_text = request.GET.get("format") == "text"
    delivery = (
        Delivery.objects.filter(issue__date=day, subscriber=subscriber, status=Delivery.Status.SENT)
        .exclude(archive_key="")
        .first()
    )
    if delivery:
        sent_at = timezone.localtime(delivery.sent_at).strftime("%Y-%m-%d %H:%M %Z") if delivery.sent_at else "?"
        banner = f"Staff preview · subscriber #{subscriber.pk} · session {day.isoformat()} · archived copy, as sent {sent_at}"
        try:
            if as_text:
                return _text(banner, archive_read_text(delivery.archive_key))
            html = served_html(archive_read_html(delivery.archive_key), view_token(str(delivery.token)))
        except FileNotFoundError:
            raise Http404("this email is no longer archived") from None
        return HttpResponse(_with_banner(html, banner))
    banner = f"Staff preview · subscriber #{subscriber.pk} · session {day.isoformat()} · fresh render, not sent"
    composed = preview_email(subscriber=subscriber, day=day)
    if as_text:
        return _text(banner, composed.text)
    return HttpResponse(_with_banner(composed.html, banner))


def _text(banner: str, text: str) -> HttpResponse:
    return HttpResponse(f"[{banner}]\n\n{text}", content_type="text/plain; charset=utf-8")


def _with_banner(html: str, banner: str) -> str:
    """The preview's own line above the email, so staff never mistake a fresh render for what was sent."""
    tag = format_html(
        '<div id="staff-preview-banner" style="background:#fff4ce;color:#1d2433;font:14px/1.4 sans-serif;'
        'padding:8px 12px;border-bottom:1px solid #e0c97a">{}</div>',
        banner,
    )
    return BODY_OPEN.sub(lambda m: m.group(0) + tag, html, count=1) if BODY_OPEN.search(html) else tag + html


def served_html(html: str, view_token_: str) -> str:
    """An archived email's HTML with its inline (cid:) charts pointed at the URLs that serve them."""
    base = reverse("newsletters:view", args=[view_token_])
    html = CHART_SRC.sub(lambda m: f'src="{base}images/{quote(m.group(1), safe="@")}"', html)
    return CID_SRC.sub(lambda m: f'src="{base}images/{quote(m.group(1), safe="@")}"', html)  # copies archived before


def _archived_delivery(token: str) -> Delivery:
    delivery_token = read_view_token(token)
    if not delivery_token:
        raise Http404("invalid link")
    delivery = Delivery.objects.filter(token=delivery_token).exclude(archive_key="").first()
    if delivery is None:
        raise Http404("no such email")
    return delivery


# Attributes whose URL a reader's browser follows or submits to. The lookahead lets the engine skip most positions
# of a 100 KB email at once (twice as fast as without; see bench/privacy.py).
LINK_ATTRIBUTE = re.compile(
    r"""(?=[hafHAF])\b(href|action|formaction)\s*=\s*(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL
)


def acts_as_subscriber(url: str) -> bool:
    """Whether ``url`` is one of the subscriber's personal links: a subscriptions page that takes a signed token
    (preferences, unsubscribe, confirm, data download or deletion), on whatever host the email was sent from."""
    path = urlsplit(unescape(url.strip())).path
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.namespace == "subscriptions" and "token" in match.kwargs


def public_copy(html: str, *, email: str) -> str:
    """The archived email as anyone holding its "view in browser" link may see it.

    That link is the one people pass on (forwarded, pasted in a chat), so the copy it shows must not act as the
    subscriber: every personal link is pointed at the subscribe page, where the address's owner can ask for a
    link to their subscription by email. The archive itself stays exactly what was sent. The address the email
    was sent to is not shown either.
    """
    public = escape(absolute(reverse("subscriptions:subscribe")))

    def rewrite(m: re.Match) -> str:
        name, quote_mark, url = m.groups()
        return f"{name}={quote_mark}{public}{quote_mark}" if acts_as_subscriber(url) else m.group(0)

    html = LINK_ATTRIBUTE.sub(rewrite, html)
    if email:
        html = html.replace(escape(email), "your address").replace(email, "your address")
    return html


def view_in_browser(request: HttpRequest, token: str) -> HttpResponse:
    """The archived copy of a sent email, without its personal links; its inline charts come from the archived
    message itself."""
    delivery = _archived_delivery(token)
    try:
        html = archive_read_html(delivery.archive_key)
    except FileNotFoundError:
        raise Http404("this email is no longer archived") from None
    response = HttpResponse(public_copy(served_html(html, token), email=delivery.email))
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
@require_safe
def send_job(request: HttpRequest, job_token: uuid.UUID) -> HttpResponse:
    job = get_object_or_404(SendJob, token=job_token)
    return render(request, "newsletters/send_now.html", {"job": job, "message": job_message(job)})


@never_cache
@require_safe
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
