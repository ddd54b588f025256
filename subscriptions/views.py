"""The subscriber's pages: subscribe, confirm, preferences, unsubscribe, and the ticker search they use."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from markets.providers.base import ProviderError
from markets.selectors import ticker_search as search_tickers
from walter_site.ratelimit import allow
from walter_site.security import client_ip

from . import tokens
from .forms import MAX_TICKERS, SubscribeForm, TickersForm
from .models import Subscriber
from .services import (
    StaleConfirmation,
    subscriber_confirm,
    subscriber_erase,
    subscriber_export,
    subscriber_set_status,
    subscriber_set_tickers,
    subscriber_subscribe,
)

HOUR = 3600


def _subscriber(purpose: str, token: str) -> Subscriber | None:
    try:
        subscriber_id = tokens.read_token(purpose, token)
    except tokens.BadToken:
        return None
    return Subscriber.objects.filter(pk=subscriber_id).first()


def _invalid_link(request: HttpRequest) -> HttpResponse:
    return render(request, "subscriptions/invalid_link.html", status=404)


@require_http_methods(["GET", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "subscriptions/subscribe.html", {"form": SubscribeForm(), "max_tickers": MAX_TICKERS})
    form = SubscribeForm(request.POST)
    if request.POST.get("website"):
        # The honeypot: a bot filled the hidden field. It sees the usual page; nothing is stored or sent.
        return redirect("subscriptions:check_inbox")
    if not allow(f"subscribe:ip:{client_ip(request)}", settings.SUBSCRIBE_LIMIT_PER_IP, HOUR):
        return _too_many(request, form)
    if not form.is_valid():
        return render(request, "subscriptions/subscribe.html", {"form": form, "max_tickers": MAX_TICKERS}, status=400)
    if not allow(f"subscribe:email:{form.cleaned_data['email']}", settings.SUBSCRIBE_LIMIT_PER_EMAIL, HOUR):
        return _too_many(request, form)
    subscriber_subscribe(email=form.cleaned_data["email"], symbols=form.cleaned_data["tickers"])
    # The same page whether the address was new, pending, confirmed or suppressed: no enumeration.
    return redirect("subscriptions:check_inbox")


def _too_many(request: HttpRequest, form: SubscribeForm) -> HttpResponse:
    context = {
        "form": form,
        "max_tickers": MAX_TICKERS,
        "error": "Too many attempts from here. Please try again in an hour.",
    }
    response = render(request, "subscriptions/subscribe.html", context, status=429)
    response["Retry-After"] = str(HOUR)
    return response


@require_GET
def check_inbox(request: HttpRequest) -> HttpResponse:
    return render(request, "subscriptions/check_inbox.html")


@never_cache
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET only shows a button (mail scanners prefetch links); the POST it sends confirms."""
    try:
        subscriber_id, stamp = tokens.read_confirm_token(token)
    except tokens.BadToken:
        return _invalid_link(request)
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None or (subscriber.is_suppressed and subscriber.status != Subscriber.Status.UNSUBSCRIBED):
        return _invalid_link(request)
    if tokens.confirm_token_is_stale(stamp, status=subscriber.status, unsubscribed_at=subscriber.unsubscribed_at):
        return _stale_confirm_link(request)
    if request.method == "POST":
        try:
            subscriber = subscriber_confirm(subscriber=subscriber, opt_out_stamp=stamp)
        except StaleConfirmation:
            return _stale_confirm_link(request)
        return render(
            request,
            "subscriptions/confirmed.html",
            {"subscriber": subscriber, "preferences_url": _preferences_path(subscriber)},
        )
    return render(request, "subscriptions/confirm.html", {"subscriber": subscriber})


def _stale_confirm_link(request: HttpRequest) -> HttpResponse:
    # 410: the link was genuine, but an unsubscribe since then outranks it for good.
    return render(request, "subscriptions/stale_confirm_link.html", status=410)


def _preferences_path(subscriber: Subscriber) -> str:
    return reverse("subscriptions:preferences", args=[tokens.make_token(tokens.PREFERENCES, subscriber.pk)])


@csrf_exempt  # RFC 8058: mail clients POST here without cookies or a CSRF token; the signed URL is the proof.
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = _subscriber(tokens.UNSUBSCRIBE, token)
    if subscriber is None:
        return _invalid_link(request)
    if request.method == "POST":
        if subscriber.status != Subscriber.Status.UNSUBSCRIBED and not subscriber.is_suppressed:
            subscriber_set_status(subscriber=subscriber, status=Subscriber.Status.UNSUBSCRIBED)
        return render(request, "subscriptions/unsubscribed.html", {"subscriber": subscriber})
    return render(request, "subscriptions/unsubscribe.html", {"subscriber": subscriber})


@never_cache
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = _subscriber(tokens.PREFERENCES, token)
    if subscriber is None:
        return _invalid_link(request)
    symbols = sorted(subscriber.tickers.values_list("symbol", flat=True))
    tickers_form = TickersForm(initial={"tickers": ", ".join(symbols)})
    context = {"subscriber": subscriber, "symbols": symbols, "max_tickers": MAX_TICKERS}
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        statuses = {
            "pause": (Subscriber.Status.ACTIVE,),
            "resume": (Subscriber.Status.PAUSED,),
            "unsubscribe": (Subscriber.Status.ACTIVE, Subscriber.Status.PAUSED, Subscriber.Status.PENDING),
        }
        if action == "tickers":
            tickers_form = TickersForm(request.POST)
            if tickers_form.is_valid():
                subscriber_set_tickers(subscriber=subscriber, symbols=tickers_form.cleaned_data["tickers"])
                context["notice"] = "Your tickers are saved."
            else:
                status = 400
        elif action in statuses and subscriber.status in statuses[action]:
            target = {
                "pause": Subscriber.Status.PAUSED,
                "resume": Subscriber.Status.ACTIVE,
                "unsubscribe": Subscriber.Status.UNSUBSCRIBED,
            }[action]
            subscriber_set_status(subscriber=subscriber, status=target)
            context["notice"] = {
                "pause": "Paused: no emails until you resume.",
                "resume": "Resumed: your next email comes on the next trading morning.",
                "unsubscribe": "Unsubscribed: you will not get another email.",
            }[action]
        elif action == "export":
            data = json.dumps(subscriber_export(subscriber=subscriber), indent=2)
            response = HttpResponse(data, content_type="application/json")
            response["Content-Disposition"] = 'attachment; filename="walter-my-data.json"'
            return response
        elif action == "delete":
            if request.POST.get("confirm_delete") != "yes":
                context["error"] = "Tick the box to confirm that everything should be deleted."
                status = 400
            else:
                subscriber_erase(subscriber=subscriber)
                return render(request, "subscriptions/deleted.html")
        else:
            context["error"] = "That change is not possible."
            status = 400
        subscriber.refresh_from_db()
        context["symbols"] = sorted(subscriber.tickers.values_list("symbol", flat=True))
        if status == 200:
            tickers_form = TickersForm(initial={"tickers": ", ".join(context["symbols"])})
    context["tickers_form"] = tickers_form
    return render(request, "subscriptions/preferences.html", context, status=status)


@require_GET
def ticker_search(request: HttpRequest) -> JsonResponse:
    """Autocomplete for the ticker fields: ``?q=`` → up to 8 listed tickers, symbol and name."""
    if not allow(f"search:ip:{client_ip(request)}", settings.TICKER_SEARCH_LIMIT_PER_MINUTE, 60):
        return JsonResponse({"error": "Too many searches; wait a minute."}, status=429)
    query = request.GET.get("q", "")
    if not isinstance(query, str) or "\x00" in query:
        return JsonResponse({"error": "Bad query."}, status=400)
    try:
        found = search_tickers(query, limit=8)
    except ProviderError:
        return JsonResponse({"error": "Ticker search is unavailable right now."}, status=503)
    return JsonResponse({"results": [{"symbol": t.symbol, "name": t.name} for t in found]})
