"""The subscribe page is rendered once per process; each visitor gets only their own CSRF token in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.middleware import csrf
from django.template.autoreload import reset_loaders
from django.test import Client

from subscriptions.forms import SubscribeForm
from subscriptions.models import Subscriber
from walter_site import csrf_tokens
from walter_site.page_cache import CSRF_PLACEHOLDER, CsrfOnlyPage

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]+)"')


def token_in(html: str) -> str:
    (token,) = TOKEN.findall(html)
    return token


def without_token(html: str) -> str:
    return TOKEN.sub('name="csrfmiddlewaretoken" value=""', html)


def test_the_page_is_rendered_once_and_then_served_without_template_or_query(django_assert_num_queries):
    first = Client().get("/")
    assert first.status_code == 200
    assert "subscriptions/subscribe.html" in [t.name for t in first.templates]

    with django_assert_num_queries(0):
        later = Client().get("/")
    assert later.status_code == 200
    assert later.templates == []  # no template rendered: the page came from the process's copy
    assert without_token(later.content.decode()) == without_token(first.content.decode())
    assert CSRF_PLACEHOLDER not in later.content.decode()


def test_each_visitor_gets_their_own_token_and_cookie_but_no_session():
    one, two = Client(), Client()
    page_one, page_two = one.get("/"), two.get("/")
    assert token_in(page_one.content.decode()) != token_in(page_two.content.decode())
    assert one.cookies["csrftoken"].value != two.cookies["csrftoken"].value
    assert django_settings.SESSION_COOKIE_NAME not in page_one.cookies
    assert "Cookie" in page_one["Vary"]  # the token is the visitor's: no shared cache may keep the page


def test_a_post_with_the_cached_pages_token_subscribes_and_one_without_is_refused(outbox):
    Client().get("/")  # the page is now rendered, so the visitors below get the cached copy
    visitor = Client(enforce_csrf_checks=True)
    page = visitor.get("/")
    assert page.templates == []
    data = {"email": "ada@example.com", "tickers": "AAPL"}

    assert visitor.post("/", data).status_code == 403  # the cookie alone is not enough
    assert Client(enforce_csrf_checks=True).post("/", {**data, "csrfmiddlewaretoken": "x" * 64}).status_code == 403
    stranger = Client(enforce_csrf_checks=True)
    stranger.get("/")  # a cookie of its own: another visitor's token does not match it
    assert stranger.post("/", {**data, "csrfmiddlewaretoken": token_in(page.content.decode())}).status_code == 403
    assert not Subscriber.objects.exists()

    accepted = visitor.post("/", {**data, "csrfmiddlewaretoken": token_in(page.content.decode())})
    assert accepted.status_code == 302 and accepted["Location"] == "/subscribe/check-your-inbox/"
    assert Subscriber.objects.filter(email="ada@example.com").exists()


def test_a_failed_post_shows_its_errors_and_the_next_visitor_still_gets_the_empty_page():
    Client().get("/")
    failed = Client().post("/", {"email": "ada@example.com", "tickers": "AAPL, ZZZZ"})
    assert failed.status_code == 400
    html = failed.content.decode()
    assert 'id="tickers-error"' in html and "ada@example.com" in html and token_in(html)

    fresh = Client().get("/").content.decode()
    assert "ada@example.com" not in fresh and "ZZZZ" not in fresh and 'id="tickers-error"' not in fresh


def test_the_page_follows_a_changed_setting(settings):
    assert "/static/walter/site.css" in Client().get("/").content.decode()
    settings.STATIC_URL = "/assets/"
    assert "/assets/walter/site.css" in Client().get("/").content.decode()


def test_the_page_follows_a_changed_template(settings, tmp_path: Path):
    """The cached template loader keeps a template until it is told that one changed (runserver does, on an edit)."""
    source = (Path(django_settings.BASE_DIR) / "templates/subscriptions/subscribe.html").read_text()
    override = tmp_path / "subscriptions" / "subscribe.html"
    override.parent.mkdir()
    override.write_text(source.replace("Your stocks, explained", "Version one: your stocks, explained"))
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    assert "Version one" in Client().get("/").content.decode()

    override.write_text(source.replace("Your stocks, explained", "Version two: your stocks, explained"))
    assert "Version one" in Client().get("/").content.decode()  # rendered once: the edit is not seen yet
    reset_loaders()
    assert "Version two" in Client().get("/").content.decode()


def test_csrf_secrets_and_masks_come_from_one_random_read_each(monkeypatch):
    reads = []
    real = csrf_tokens.secrets.token_bytes
    monkeypatch.setattr(csrf_tokens.secrets, "token_bytes", lambda n: reads.append(n) or real(n))
    assert csrf.get_random_string is csrf_tokens.random_string
    Client().get("/")
    assert len(reads) == 2  # a new visitor: the cookie's secret and the token's mask


def test_random_strings_drop_the_bytes_that_would_favour_some_characters(monkeypatch):
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"  # 62: bytes 248-255 are dropped
    reads = iter([bytes([247, 248, 255, 0, 61, 62, 124, 200]), bytes([1, 2, 3, 4, 5, 6, 7, 8])])
    monkeypatch.setattr(csrf_tokens.secrets, "token_bytes", lambda n: next(reads)[:n])
    assert csrf_tokens.random_string(8, alphabet) == "9a9aaobc"  # 247, 0, 61, 62, 124, 200 (mod 62), then 1, 2
    monkeypatch.undo()
    drawn = csrf_tokens.random_string(10_000, alphabet)
    assert len(drawn) == 10_000 and set(drawn) == set(alphabet)


def test_a_page_that_shows_data_is_rendered_again_when_its_version_changes(rf):
    shown = {"count": 3}
    page = CsrfOnlyPage(
        "subscriptions/subscribe.html",
        lambda: {"form": SubscribeForm(), "max_tickers": shown["count"]},
        version=lambda: shown["count"],
    )
    assert "up to 3" in page.response(rf.get("/")).content.decode()
    shown["count"] = 7
    assert "up to 7" in page.response(rf.get("/")).content.decode()
