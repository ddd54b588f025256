"""Every public endpoint, fed random paths, query strings, bodies and headers (GET, HEAD, POST), never answers 5xx.

The endpoints are read from the URL configuration itself, so a new one is fuzzed the day it is added; and it must
also be named in GENUINE_ARGUMENTS (what its URL arguments look like when they are right), so that the fuzzing
reaches past "no such link" into the view, or the completeness test fails.
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletters.links import view_token
from newsletters.models import Delivery, SendJob
from subscriptions import sns, tokens
from subscriptions.models import Subscriber
from tests.test_sns_webhook import CERT_PEM, TOPIC

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

FUZZ = hsettings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))

# Django's admin is for staff, behind a login and django-axes; of it, only the login page is open to anyone.
PUBLIC_ADMIN = {"admin:login"}


def public_routes() -> dict[str, str]:
    """Every named URL a visitor can reach, as ``{name: route}`` (``"subscriptions:confirm": "confirm/<str:token>/"``)."""
    routes: dict[str, str] = {}

    def walk(patterns: list, prefix: str, namespace: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                inner = ":".join(filter(None, [namespace, entry.namespace or ""]))
                walk(entry.url_patterns, prefix + str(entry.pattern), inner)
            elif isinstance(entry, URLPattern):
                name = ":".join(filter(None, [namespace, entry.name or str(entry.pattern)]))
                if not name.startswith("admin:") or name in PUBLIC_ADMIN:
                    routes[name] = prefix + str(entry.pattern)

    walk(get_resolver().url_patterns, "", "")
    return routes


ROUTES = public_routes()
ARGUMENT = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")

# What each endpoint's URL arguments look like when they are right, from the objects the ``world`` fixture made.
GENUINE_ARGUMENTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "healthz": lambda w: {},
    "readyz": lambda w: {},
    "admin:login": lambda w: {},
    "newsletters:view": lambda w: {"token": w["view_token"]},
    "newsletters:view-image": lambda w: {"token": w["view_token"], "cid": w["cid"]},
    "newsletters:preview": lambda w: {"subscriber_id": w["reader"].pk, "date": w["day"]},
    "subscriptions:subscribe": lambda w: {},
    "newsletters:archive": lambda w: {},
    "newsletters:archive-feed": lambda w: {},
    "newsletters:archive-day": lambda w: {"date": w["day"]},
    "newsletters:archive-chart": lambda w: {"date": w["day"], "symbol": "NVDA"},
    "subscriptions:check_inbox": lambda w: {},
    "subscriptions:confirm": lambda w: {
        "token": tokens.make_confirm_token(w["reader"].pk, unsubscribed_at=w["reader"].unsubscribed_at)
    },
    "subscriptions:unsubscribe": lambda w: {"token": tokens.make_token(tokens.UNSUBSCRIBE, w["reader"].pk)},
    "subscriptions:preferences": lambda w: {"token": tokens.make_token(tokens.PREFERENCES, w["reader"].pk)},
    "subscriptions:ticker_search": lambda w: {},
    "subscriptions:ses_events": lambda w: {},
    "subscriptions:data_export": lambda w: {"token": tokens.make_token(tokens.EXPORT, w["reader"].pk)},
    "subscriptions:data_delete": lambda w: {"token": tokens.make_token(tokens.DELETE, w["reader"].pk)},
    "favicon": lambda w: {},
    "newsletters:send-now": lambda w: {"token": tokens.make_token(tokens.PREFERENCES, w["reader"].pk)},
    "newsletters:send-job": lambda w: {"job_token": w["job"]},
    "newsletters:send-job-status": lambda w: {"job_token": w["job"]},
}

# Text a request can carry (no lone surrogates: they have no UTF-8 encoding).
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=300),
    st.sampled_from(["", "\x00", "yes", "AAPL", "reader@example.com", "../..", "%", "İ" * 130]),
)
# Header values as a server hands them over: latin-1, no line breaks (servers refuse those).
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "HTTP_X_FORWARDED_FOR",
            "HTTP_X_FORWARDED_PROTO",
            "HTTP_ACCEPT",
            "HTTP_ACCEPT_LANGUAGE",
            "HTTP_ACCEPT_ENCODING",
            "HTTP_COOKIE",
            "HTTP_REFERER",
            "HTTP_ORIGIN",
            "HTTP_USER_AGENT",
            "HTTP_IF_MODIFIED_SINCE",
            "HTTP_IF_NONE_MATCH",
            "HTTP_RANGE",
            "HTTP_X_REQUESTED_WITH",
            "HTTP_HOST",
            "REMOTE_ADDR",
        ]
    ),
    st.one_of(HEADER_TEXT, st.sampled_from(["csrftoken=x; sessionid=y", "1.2.3.4, ::1", "", "testserver:80"])),
    max_size=4,
)
FIELDS = st.sampled_from(
    ["email", "tickers", "website", "action", "confirm_delete", "q", "username", "password", "List-Unsubscribe"]
)
VALUES = st.one_of(
    TEXT, st.sampled_from(["tickers", "pause", "resume", "unsubscribe", "export", "delete", "One-Click", "NVDA"])
)
FORM = st.dictionaries(st.one_of(FIELDS, TEXT), st.one_of(VALUES, st.lists(VALUES, max_size=3)), max_size=5)
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=BoUnDaRy",
            "multipart/form-data",
            "application/json",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded; charset=latin-1",
            "application/x-www-form-urlencoded; charset=nonsense",
        ]
    ),
    HEADER_TEXT,
)
RAW_BODY = st.one_of(
    st.binary(max_size=2000),
    st.just(b'--BoUnDaRy\r\nContent-Disposition: form-data; name="email"\r\n\r\na@b.c\r\n--BoUnDaRy--\r\n'),
)
QUERY = st.one_of(
    st.binary(max_size=300).map(lambda b: quote_from_bytes(b, safe="=&")),
    st.dictionaries(st.one_of(FIELDS, st.sampled_from(["format", "next"])), TEXT, max_size=3).map(
        lambda d: "&".join(f"{quote(k)}={quote(v)}" for k, v in d.items())
    ),
)


# Values that broke something somewhere once: NUL (PostgreSQL refuses it), empty, huge, longer once lower-cased.
NASTY = ["\x00", "a\x00b", "", "x" * 5000, "İ" * 130, "\u202e\ufeff", "%", "[]"]
# Parameters views read from the query string that no form on a page names.
QUERY_NAMES = ["q", "format", "next"]
# What a person types into the fields a page leaves empty, so the sweep starts from a submission that goes through.
TYPED = {"email": "new.reader@example.com", "tickers": "AAPL, MSFT", "username": "staff", "password": "x"}
FORM_TAG = re.compile(r"<form\b.*?</form>", re.S | re.I)
FIELD = re.compile(r"<(?:input|button|select|textarea)\b[^>]*>", re.I)


def _attribute(tag: str, name: str) -> str | None:
    found = re.search(rf'\b{name}="([^"]*)"', tag)
    return html.unescape(found.group(1)) if found else None


def page_forms(response) -> list[list[dict[str, str]]]:
    """The submissions each form on the page can make: its fields' values, once per named button."""
    if "html" not in response.get("Content-Type", ""):
        return []
    forms = []
    for form in FORM_TAG.findall(response.content.decode(errors="replace")):
        fields, buttons = {}, []
        for tag in FIELD.findall(form):
            name = _attribute(tag, "name")
            if name is None:
                continue
            if tag.lower().startswith("<button"):
                buttons.append({name: _attribute(tag, "value") or ""})
            else:
                fields[name] = _attribute(tag, "value") or TYPED.get(name, "")
        forms.append([{**fields, **button} for button in buttons] or [fields])
    return forms


def sweep(form: dict[str, str]) -> list[dict[str, str]]:
    """The form as the page sends it, then with each field (and each query parameter a view reads) made nasty."""
    return [form] + [{**form, name: nasty} for name in [*form, *QUERY_NAMES] for nasty in NASTY]


def argument(converter: str | None) -> st.SearchStrategy:
    if converter == "int":
        return st.integers(min_value=0, max_value=10**40).map(str)
    # Anything, percent-encoded so it stays one path segment (or more, for <path:...>).
    return TEXT.filter(bool).map(lambda text: quote(text, safe="" if converter != "path" else "/"))


def path_for(route: str, values: dict[str, str]) -> str:
    return "/" + ARGUMENT.sub(lambda m: values[m.group("name")], route)


# Only these need an email sent and archived (a daily run: seconds); the others need just a subscriber.
NEEDS_AN_ISSUE = {"newsletters:view", "newsletters:view-image", "newsletters:preview", "newsletters:archive-chart"}


@pytest.fixture
def world(request, settings, monkeypatch, trading_day) -> dict[str, Any]:
    """A reader with genuine links (and, where the endpoint shows one, a sent and archived issue); no way out to the
    internet."""
    settings.SUBSCRIBE_LIMIT_PER_IP = 10**9
    settings.SUBSCRIBE_LIMIT_PER_EMAIL = 10**9
    settings.TICKER_SEARCH_LIMIT_PER_MINUTE = 10**9
    settings.SES_EVENTS_TOPIC_ARNS = [TOPIC]
    monkeypatch.setattr(sns, "fetch_certificate", lambda url: CERT_PEM)

    def no_network(url: str, **kwargs) -> bytes:
        raise AssertionError(f"a request to {url} left the machine")

    monkeypatch.setattr(sns, "http_get", no_network)
    if request.node.callspec.params.get("name") not in NEEDS_AN_ISSUE:
        reader = Subscriber.objects.create(email="reader@example.com", status=Subscriber.Status.ACTIVE)
        job = SendJob.objects.create(subscriber=reader, day=trading_day)
        return {"reader": reader, "view_token": "x", "cid": "x", "day": trading_day.isoformat(), "job": job.token}
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat())
    delivery = Delivery.objects.filter(status=Delivery.Status.SENT).select_related("subscriber").first()
    archived = (settings.VAR_DIR / "archive" / delivery.archive_key).read_text()
    cid = re.search(r'src="(?:cid:|charts/)([^"]+?)(?:\.png)?"', archived)
    return {
        "reader": delivery.subscriber,
        "view_token": view_token(str(delivery.token)),
        "cid": quote(cid.group(1), safe="@") if cid else "chart",
        "day": trading_day.isoformat(),
        "job": SendJob.objects.create(subscriber=delivery.subscriber, day=trading_day).token,
    }


def test_every_public_endpoint_is_fuzzed_with_its_genuine_arguments():
    assert set(ROUTES) == set(GENUINE_ARGUMENTS), (
        "name each new endpoint's genuine URL arguments in GENUINE_ARGUMENTS (and drop the ones that are gone)"
    )
    assert len(ROUTES) >= 10  # the walk found the apps' URLs, not just the admin


_capture: Callable | None = None


@pytest.fixture(autouse=True)
def on_commit_runs(django_capture_on_commit_callbacks):
    """What a request does once its transaction commits (emails, file deletions) runs too: the test transaction
    never commits, and in production a failure there fails the request."""
    global _capture
    _capture = django_capture_on_commit_callbacks
    yield
    _capture = None


def send(client: Client, method: str, url: str, **kwargs: Any) -> HttpResponse:
    """One request, whose writes are undone afterwards, so every request meets the same world (a "delete my data"
    drawn early does not turn the rest into 404s)."""
    with transaction.atomic():
        with _capture(execute=True):
            if method in ("get", "head", "post"):
                response = getattr(client, method)(url, **kwargs)
            else:  # generic() sends the bytes as they are; post() would re-encode them for the charset named.
                response = client.generic(method, url, **kwargs)
        transaction.set_rollback(True)
    return response


@pytest.fixture
def staff(db, settings):
    # Every login attempt hashes a password; the real hasher is slow on purpose, and this is not its test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return get_user_model().objects.create_user("staff", password="x", is_staff=True, is_superuser=True)


def clients(staff) -> list[Client]:
    signed_in = Client()
    signed_in.force_login(staff)
    return [Client(), signed_in]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ROUTES))
def test_every_form_on_a_public_page_sent_with_each_field_nasty_is_never_a_server_error(name, world, staff):
    url = path_for(ROUTES[name], {k: str(v) for k, v in GENUINE_ARGUMENTS[name](world).items()})
    for client in clients(staff):
        page = send(client, "get", url)
        assert page.status_code < 500
        # The sweep is only as good as the parser: a page with a form must yield at least one submission.
        assert page_forms(page) or b"<form" not in page.content
        for submissions in page_forms(page) or [[{}]]:
            for submission in submissions:
                for form in sweep(submission):
                    for method, kwargs in (("post", {"data": form}), ("get", {"data": form})):
                        response = send(client, method, url, **kwargs)
                        assert response.status_code < 500, (method, url, form, response.content[:300])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ROUTES))
def test_no_request_to_a_public_endpoint_is_answered_with_a_server_error(name, world, staff):
    route = ROUTES[name]
    converters = {m.group("name"): m.group("converter") for m in ARGUMENT.finditer(route)}
    genuine = GENUINE_ARGUMENTS[name](world)
    fields: dict[str, list[str]] = {n: [] for n in QUERY_NAMES}
    for client in clients(staff):
        for submissions in page_forms(send(client, "get", path_for(route, {k: str(v) for k, v in genuine.items()}))):
            for submission in submissions:
                for field, value in submission.items():
                    fields.setdefault(field, []).append(value)
    # Mostly the fields the pages name, with their own values, nasty ones, or anything; sometimes anything at all.
    known = st.fixed_dictionaries(
        {},
        optional={
            field: st.one_of(st.sampled_from(sorted(set(values)) or [""]), st.sampled_from(NASTY), TEXT)
            for field, values in fields.items()
        },
    )
    forms = st.one_of(known, known, FORM)
    visitors = clients(staff)

    @FUZZ
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        values = {
            arg: data.draw(st.one_of(st.just(str(genuine[arg])), st.just(str(genuine[arg])), argument(conv)))
            for arg, conv in converters.items()
        }
        path = path_for(route, values)
        query = data.draw(st.one_of(QUERY, forms.map(urlencode)))
        method = data.draw(st.sampled_from(["get", "head", "post", "post"]))
        headers = data.draw(HEADERS)
        client = data.draw(st.sampled_from(visitors))
        url = f"{path}?{query}" if query else path
        if method == "post" and data.draw(st.integers(0, 3)):
            response = send(client, "post", url, data=data.draw(forms), **headers)
        elif method == "post":
            body, content_type = data.draw(RAW_BODY), data.draw(CONTENT_TYPES)
            response = send(client, "POST", url, data=body, content_type=content_type, **headers)
        else:
            response = send(client, method, url, **headers)
        assert response.status_code < 500, (method, url, response.status_code, response.content[:300])

    fuzz()


@pytest.mark.parametrize("username", ["x" * 300, "İ" * 200, "staff"])
def test_a_failed_admin_login_with_any_username_is_a_form_error(client, staff, username):
    # Found by the sweep on PostgreSQL: django-axes stored the whole username in a 255-character column (500).
    from axes.models import AccessAttempt

    response = client.post(reverse("admin:login"), {"username": username, "password": "wrong"})
    assert response.status_code == 200 and b"errornote" in response.content
    (attempt,) = AccessAttempt.objects.all()
    assert attempt.username == username[:150]


def test_the_routes_are_read_from_the_url_configuration():
    # A made-up include shows up without anyone listing it.
    assert {"subscriptions:confirm", "newsletters:view", "healthz"} <= set(ROUTES)
    assert not any(name.startswith("admin:") and name not in PUBLIC_ADMIN for name in ROUTES)
    assert all(set(string.whitespace).isdisjoint(route) for route in ROUTES.values())


@pytest.mark.parametrize(
    ("forwarded", "remote"), [("0", "0"), ("not-an-address", "127.0.0.1"), ("", "::1 "), ("10.0.0.1, 0", "0")]
)
def test_an_address_that_is_no_address_never_reaches_the_database(client, staff, settings, forwarded, remote):
    # Found by the fuzz on PostgreSQL: a forged "0" as the client's address made django-axes's query fail (500).
    settings.TRUSTED_PROXY_COUNT = 1
    response = client.post(
        reverse("admin:login"),
        {"username": "staff", "password": "wrong"},
        HTTP_X_FORWARDED_FOR=forwarded,
        REMOTE_ADDR=remote,
    )
    assert response.status_code == 200 and b"errornote" in response.content
