"""The subscriber's pages: subscribe, confirm, preferences, unsubscribe, their data's download and deletion (by a
fresh link sent to the address), and the ticker search they use."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from markets.selectors import TickerDirectoryEmpty
from markets.selectors import ticker_search as search_tickers
from walter_site.page_cache import CsrfOnlyPage
from walter_site.ratelimit import allow
from walter_site.security import client_ip

from . import tokens
from .emails import EmailNotSent
from .forms import MAX_TICKERS, SubscribeForm, TickersForm, tickers_initial
from .models import Subscriber
from .selectors import holdings_of
from .services import (
    StaleConfirmation,
    subscriber_confirm,
    subscriber_data_link_send,
    subscriber_erase,
    subscriber_export,
    subscriber_set_status,
    subscriber_set_tickers,
    subscriber_subscribe,
)

HOUR = 3600
logger = logging.getLogger("walter.subscriptions")


def _subscriber(purpose: str, token: str) -> Subscriber | None:
    try:
        subscriber_id = tokens.read_token(purpose, token)
    except tokens.BadToken:
        return None
    return Subscriber.objects.filter(pk=subscriber_id).first()


def _invalid_link(request: HttpRequest) -> HttpResponse:
    return render(request, "subscriptions/invalid_link.html", status=404)


# The empty form is the same for everyone: rendered once per process (see walter_site.page_cache).
_subscribe_page = CsrfOnlyPage(
    "subscriptions/subscribe.html", lambda: {"form": SubscribeForm(), "max_tickers": MAX_TICKERS}
)


@require_http_methods(["GET", "HEAD", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    if request.method in ("GET", "HEAD"):
        return _subscribe_page.response(request)
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
    try:
        subscriber_subscribe(
            email=form.cleaned_data["email"],
            symbols=form.cleaned_data["tickers"],
            holdings=form.cleaned_data["holdings"],
        )
    except EmailNotSent:
        # Stored, but the email did not go: subscribing again sends it (a pending address is sent a fresh link).
        context = {
            "form": form,
            "max_tickers": MAX_TICKERS,
            "error": "We could not send the confirmation email just now. Please try again in a minute.",
        }
        response = render(request, "subscriptions/subscribe.html", context, status=503)
        response["Retry-After"] = "60"
        return response
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


@require_safe
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
    tickers_form = TickersForm(initial={"tickers": tickers_initial(symbols, holdings_of(subscriber))})
    context = {
        "subscriber": subscriber,
        "symbols": symbols,
        "max_tickers": MAX_TICKERS,
        "data_link_minutes": settings.DATA_LINK_MAX_AGE // 60,
    }
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
                subscriber_set_tickers(
                    subscriber=subscriber,
                    symbols=tickers_form.cleaned_data["tickers"],
                    holdings=tickers_form.cleaned_data["holdings"],
                )
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
        elif action in ("export", "delete"):
            # This page's link sits in every email, forwarded copies too: the data goes only to the address.
            if not allow(f"data-link:{subscriber.pk}", settings.DATA_LINK_LIMIT_PER_HOUR, HOUR):
                context["error"] = "Too many links asked for in the last hour. Use the one already emailed to you."
                status = 429
            else:
                purpose = tokens.EXPORT if action == "export" else tokens.DELETE
                try:
                    subscriber_data_link_send(subscriber=subscriber, purpose=purpose)
                except EmailNotSent:  # the email service is down, slow or refused: say so, nothing has changed
                    context["error"] = "We could not send the email just now. Nothing has changed; try again later."
                    status = 503
                else:
                    context["notice"] = (
                        f"We have emailed a link to {'download' if action == 'export' else 'delete'} your data to "
                        f"your address. It works for {settings.DATA_LINK_MAX_AGE // 60} minutes."
                    )
        else:
            context["error"] = "That change is not possible."
            status = 400
        subscriber.refresh_from_db()
        context["symbols"] = sorted(subscriber.tickers.values_list("symbol", flat=True))
        if status == 200:
            tickers_form = TickersForm(
                initial={"tickers": tickers_initial(context["symbols"], holdings_of(subscriber))}
            )
    context["tickers_form"] = tickers_form
    return render(request, "subscriptions/preferences.html", context, status=status)


def _data_request(request: HttpRequest, purpose: str, token: str) -> Subscriber | HttpResponse:
    """The subscriber a fresh data link is for, or the page that says why the link does not work."""
    try:
        subscriber_id = tokens.read_token(purpose, token)
    except tokens.ExpiredToken:
        context = {"minutes": settings.DATA_LINK_MAX_AGE // 60}
        return render(request, "subscriptions/link_expired.html", context, status=410)
    except tokens.BadToken:
        return _invalid_link(request)
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    return subscriber if subscriber is not None else _invalid_link(request)


@never_cache
@require_http_methods(["GET", "POST"])
def data_export(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button (mail scanners prefetch links and must not carry the data off); its POST downloads."""
    subscriber = _data_request(request, tokens.EXPORT, token)
    if isinstance(subscriber, HttpResponse):
        return subscriber
    if request.method == "POST":
        data = json.dumps(subscriber_export(subscriber=subscriber), indent=2)
        response = HttpResponse(data, content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="walter-my-data.json"'
        return response
    context = {"subscriber": subscriber, "minutes": settings.DATA_LINK_MAX_AGE // 60}
    return render(request, "subscriptions/data_export.html", context)


@never_cache
@require_http_methods(["GET", "POST"])
def data_delete(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks for confirmation; the POST with the box ticked erases. Once erased, the link finds no one."""
    subscriber = _data_request(request, tokens.DELETE, token)
    if isinstance(subscriber, HttpResponse):
        return subscriber
    context = {"subscriber": subscriber, "minutes": settings.DATA_LINK_MAX_AGE // 60}
    if request.method == "POST":
        if request.POST.get("confirm_delete") == "yes":
            try:
                subscriber_erase(subscriber=subscriber)
            except Exception:  # the archive's storage failed: the erase was undone whole, so asking again is safe
                logger.exception("erasing subscriber %s failed", subscriber.pk)
                context["error"] = "We could not delete everything just now, so nothing was deleted. Try again later."
                return render(request, "subscriptions/data_delete.html", context, status=503)
            return render(request, "subscriptions/deleted.html")
        context["error"] = "Tick the box to confirm that everything should be deleted."
        return render(request, "subscriptions/data_delete.html", context, status=400)
    return render(request, "subscriptions/data_delete.html", context)


def _encodable(text: str) -> bool:
    """False for lone surrogates, which no database column can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@require_safe
def ticker_search(request: HttpRequest) -> JsonResponse:
    """Autocomplete for the ticker fields: ``?q=`` → up to 8 listed tickers, symbol and name, from the local
    directory: a keystroke never waits on the market-data provider or spends its budget."""
    if not allow(f"search:ip:{client_ip(request)}", settings.TICKER_SEARCH_LIMIT_PER_MINUTE, 60):
        return JsonResponse({"error": "Too many searches; wait a minute."}, status=429)
    query = request.GET.get("q", "")
    if not isinstance(query, str) or "\x00" in query or not _encodable(query):
        return JsonResponse({"error": "Bad query."}, status=400)
    try:
        found = search_tickers(query, limit=8)
    except TickerDirectoryEmpty as exc:
        response = JsonResponse({"error": str(exc)}, status=503)
        response["Retry-After"] = "600"
        return response
    return JsonResponse({"results": [{"symbol": t.symbol, "name": t.name} for t in found]})
