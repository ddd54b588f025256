"""The subscriber's pages reached from links in emails."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from . import tokens
from .models import Subscriber
from .services import subscriber_set_status


def _subscriber(purpose: str, token: str) -> Subscriber | None:
    try:
        subscriber_id = tokens.read_token(purpose, token)
    except tokens.BadToken:
        return None
    return Subscriber.objects.filter(pk=subscriber_id).first()


@csrf_exempt  # RFC 8058: mail clients POST here without cookies or a CSRF token; the signed URL is the proof.
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = _subscriber(tokens.UNSUBSCRIBE, token)
    if subscriber is None:
        return render(request, "subscriptions/invalid_link.html", status=404)
    if request.method == "POST":
        if subscriber.status != Subscriber.Status.UNSUBSCRIBED:
            subscriber_set_status(subscriber=subscriber, status=Subscriber.Status.UNSUBSCRIBED)
        return render(request, "subscriptions/unsubscribed.html", {"subscriber": subscriber})
    return render(request, "subscriptions/unsubscribe.html", {"subscriber": subscriber})


@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = _subscriber(tokens.PREFERENCES, token)
    if subscriber is None:
        return render(request, "subscriptions/invalid_link.html", status=404)
    if request.method == "POST":
        action = request.POST.get("action")
        allowed = {
            "pause": Subscriber.Status.PAUSED,
            "resume": Subscriber.Status.ACTIVE,
            "unsubscribe": Subscriber.Status.UNSUBSCRIBED,
        }
        if action not in allowed or subscriber.status in (Subscriber.Status.BOUNCED, Subscriber.Status.COMPLAINED):
            return render(
                request,
                "subscriptions/preferences.html",
                {"subscriber": subscriber, "error": "That change is not possible."},
                status=400,
            )
        subscriber_set_status(subscriber=subscriber, status=allowed[action])
    symbols = list(subscriber.tickers.values_list("symbol", flat=True))
    return render(request, "subscriptions/preferences.html", {"subscriber": subscriber, "symbols": symbols})
