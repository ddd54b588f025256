"""The subscriber's pages: subscribe, double opt-in, preferences, unsubscribe, ticker search, and their tokens."""

from __future__ import annotations

import email
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from email import policy
from pathlib import Path

import pytest
from django.core import signing
from django.core.management import call_command
from django.db import connection
from django.test import Client

from subscriptions import tokens
from subscriptions.models import Subscriber
from subscriptions.services import StaleConfirmation, subscriber_confirm

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]


def outbox_messages(outbox: Path) -> list[email.message.EmailMessage]:
    if not outbox.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


def link_in(message: email.message.EmailMessage, kind: str) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(rf"https?://\S+/{kind}/\S+/", text).group(0).split("8000", 1)[1]


_capture = None


@pytest.fixture(autouse=True)
def on_commit_runs(django_capture_on_commit_callbacks):
    """Emails and file deletions happen on commit; the test transaction never commits, so requests made through
    ``post`` run them as a real commit would."""
    global _capture
    _capture = django_capture_on_commit_callbacks
    yield


def post(client: Client, url: str, data: dict | None = None):
    with _capture(execute=True):
        return client.post(url, data or {})


def subscribe(client: Client, address: str = "ada@example.com", tickers: str = "aapl, MSFT", **extra):
    return post(client, "/", {"email": address, "tickers": tickers, **extra})


def test_the_subscribe_page_has_its_fields_and_no_inline_script(client):
    page = client.get("/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'name="email"' in html and 'name="tickers"' in html and "up to 20" in html
    assert "confirm" in html and "one click" in html
    assert "<script>" not in html and "walter/tickers.js" in html  # the CSP allows no inline script
    assert "csrfmiddlewaretoken" in html


def test_subscribing_stores_pending_and_sends_a_confirmation_then_confirming_activates(client, outbox):
    response = subscribe(client)
    assert response.status_code == 302 and response["Location"] == "/subscribe/check-your-inbox/"
    subscriber = Subscriber.objects.get(email="ada@example.com")
    assert subscriber.status == Subscriber.Status.PENDING
    assert sorted(subscriber.tickers.values_list("symbol", flat=True)) == ["AAPL", "MSFT"]
    (message,) = outbox_messages(outbox)
    assert message["To"] == "ada@example.com" and "Confirm" in message["Subject"]
    confirm = link_in(message, "confirm")

    # A GET (what link scanners do) shows a button and changes nothing.
    page = client.get(confirm)
    assert page.status_code == 200 and b"data-autosubmit" in page.content
    assert Subscriber.objects.get(pk=subscriber.pk).status == Subscriber.Status.PENDING
    done = client.post(confirm)
    assert done.status_code == 200 and b"subscribed" in done.content
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.ACTIVE and subscriber.confirmed_at is not None


def test_the_answer_is_the_same_for_a_known_address_which_gets_a_manage_email(client, outbox):
    Subscriber.objects.create(email="known@example.com", status=Subscriber.Status.ACTIVE)
    new = subscribe(client, "new@example.com")
    known = subscribe(client, "Known@Example.com", tickers="NVDA")
    assert (new.status_code, new["Location"]) == (known.status_code, known["Location"])
    messages = {m["To"]: m for m in outbox_messages(outbox)}
    assert "Confirm" in messages["new@example.com"]["Subject"]
    manage = messages["known@example.com"]
    assert "Confirm" not in manage["Subject"] and "/preferences/" in manage.get_body(("plain",)).get_content()
    # Nothing about the confirmed subscription changed.
    assert not Subscriber.objects.get(email="known@example.com").tickers.exists()


def test_a_suppressed_address_is_sent_nothing(client, outbox):
    Subscriber.objects.create(email="gone@example.com", status=Subscriber.Status.COMPLAINED)
    assert subscribe(client, "gone@example.com").status_code == 302
    assert outbox_messages(outbox) == []


@pytest.mark.parametrize(
    ("tickers", "message"),
    [
        ("AAPL, ZZZZ", '"ZZZZ" is not a listed US ticker.'),
        ("", "This field is required."),
        (", ".join(f"T{i}" for i in range(21)), "At most 20 tickers; you entered 21."),
        ("AAPL, <script>", "is not a ticker symbol"),
    ],
)
def test_bad_tickers_are_named_next_to_the_field_and_nothing_is_stored(client, outbox, tickers, message):
    response = subscribe(client, tickers=tickers)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="tickers-error"' in html and message.replace('"', "&quot;") in html
    assert not Subscriber.objects.exists() and outbox_messages(outbox) == []


@pytest.mark.django_db(transaction=True)
def test_a_double_clicked_subscribe_answers_both_clicks_and_stores_one_subscriber(outbox, fresh_cache):
    """Two requests for one new address at the same moment, each in its own thread and database connection."""
    both_looked = threading.Barrier(2)
    one_writer = threading.Lock()

    def race(execute, sql, params, many, context):
        # PostgreSQL: hold each insert until both requests have found no row, so they race every time.
        if connection.vendor == "postgresql" and sql.startswith('INSERT INTO "subscriptions_subscriber" '):
            both_looked.wait(timeout=10)
        # SQLite: a file database makes a second writer wait for the first (busy timeout); the in-memory test
        # database refuses it at once ("table is locked"), so the second click waits here as it would there.
        if connection.vendor == "sqlite" and sql.startswith("BEGIN") and threading.get_ident() not in holder:
            assert one_writer.acquire(timeout=10)
            holder.add(threading.get_ident())
        return execute(sql, params, many, context)

    holder: set[int] = set()

    def click() -> int:
        try:
            with connection.execute_wrapper(race):
                return Client().post("/", {"email": "Ada@Example.com", "tickers": "AAPL"}).status_code
        finally:
            connection.close()
            if threading.get_ident() in holder:
                one_writer.release()

    with ThreadPoolExecutor(2) as pool:
        codes = [future.result() for future in [pool.submit(click), pool.submit(click)]]
    assert codes == [302, 302]
    (subscriber,) = Subscriber.objects.all()
    assert subscriber.status == Subscriber.Status.PENDING
    assert list(subscriber.tickers.values_list("symbol", flat=True)) == ["AAPL"]
    assert {m["To"] for m in outbox_messages(outbox)} == {"ada@example.com"}


def test_a_bad_address_is_a_400_with_its_message(client):
    response = subscribe(client, address="not-an-address")
    assert response.status_code == 400 and b'id="email-error"' in response.content
    assert not Subscriber.objects.exists()


def test_the_honeypot_looks_like_success_and_stores_nothing(client, outbox):
    response = subscribe(client, website="http://spam.example")
    assert response.status_code == 302
    assert not Subscriber.objects.exists() and outbox_messages(outbox) == []


def test_rate_limits_per_address_and_per_client(client, settings):
    settings.SUBSCRIBE_LIMIT_PER_EMAIL = 2
    settings.SUBSCRIBE_LIMIT_PER_IP = 4
    codes = [subscribe(client, "ada@example.com").status_code for _ in range(3)]
    assert codes == [302, 302, 429]
    codes = [subscribe(client, f"u{i}@example.com").status_code for i in range(2)]
    assert codes == [302, 429]  # the fifth attempt from this address
    limited = subscribe(client, "other@example.com")
    assert limited.status_code == 429 and limited["Retry-After"] == "3600"


def test_the_search_endpoint_answers_symbols_and_names_from_the_provider(client):
    response = client.get("/api/tickers/search", {"q": "micro"})
    assert response.status_code == 200
    results = response.json()["results"]
    assert {"symbol": "MSFT", "name": "Microsoft Corporation"} in results
    assert client.get("/api/tickers/search", {"q": ""}).json() == {"results": []}
    assert client.get("/api/tickers/search", {"q": "x" * 5000}).status_code == 200


def test_the_search_endpoint_is_rate_limited(client, settings):
    settings.TICKER_SEARCH_LIMIT_PER_MINUTE = 3
    codes = [client.get("/api/tickers/search", {"q": "a"}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


# -- tokens --------------------------------------------------------------------------------------------


def test_tampered_expired_and_cross_purpose_tokens_are_refused(client, settings):
    subscriber = Subscriber.objects.create(email="t@example.com", status=Subscriber.Status.PENDING)
    confirm = tokens.make_token(tokens.CONFIRM, subscriber.pk)
    # Another purpose's token does not confirm, and a confirm token does not unsubscribe.
    assert client.post(f"/confirm/{tokens.make_token(tokens.UNSUBSCRIBE, subscriber.pk)}/").status_code == 404
    assert client.post(f"/unsubscribe/{confirm}/").status_code == 404
    assert client.get(f"/preferences/{confirm}/").status_code == 404
    # Tampered: another subscriber id with the same signature.
    tampered = (
        signing.dumps(subscriber.pk + 1, salt="walter.subscriber.confirm").split(":")[0]
        + ":"
        + (confirm.split(":", 1)[1])
    )
    assert client.post(f"/confirm/{tampered}/").status_code == 404
    # Expired: the confirmation link lives 3 days.
    settings.SECRET_KEY = settings.SECRET_KEY  # same key, later clock
    old = signing.TimestampSigner(salt="walter.subscriber.confirm")
    with pytest.raises(tokens.BadToken):
        tokens.read_token(tokens.CONFIRM, _aged(old, subscriber.pk, days=4))
    assert tokens.read_token(tokens.CONFIRM, _aged(old, subscriber.pk, days=2)) == subscriber.pk
    assert client.post(f"/confirm/{_aged(old, subscriber.pk, days=4)}/").status_code == 404
    assert Subscriber.objects.get(pk=subscriber.pk).status == Subscriber.Status.PENDING


def unsubscribe(client: Client, subscriber: Subscriber) -> None:
    assert post(client, f"/unsubscribe/{tokens.make_token(tokens.UNSUBSCRIBE, subscriber.pk)}/").status_code == 200


def status(address: str = "ada@example.com") -> str:
    return Subscriber.objects.get(email=address).status


def test_a_confirm_link_sent_before_an_unsubscribe_never_resubscribes(client, outbox):
    subscribe(client)
    old_link = link_in(outbox_messages(outbox)[-1], "confirm")
    assert client.post(old_link).status_code == 200 and status() == Subscriber.Status.ACTIVE
    unsubscribe(client, Subscriber.objects.get())

    # Days later the old email is opened again: the page says why, and the unsubscribe stands.
    for response in (client.get(old_link), client.post(old_link)):
        html = response.content.decode()
        assert response.status_code == 410 and "out of date" in html and "data-autosubmit" not in html
        assert 'href="/"' in html  # the way back is to subscribe again
    assert status() == Subscriber.Status.UNSUBSCRIBED

    # Subscribing again sends a fresh link, which works; the old one still does not.
    subscribe(client)
    fresh_link = link_in(outbox_messages(outbox)[-1], "confirm")
    assert fresh_link != old_link and client.post(old_link).status_code == 410
    assert status() == Subscriber.Status.UNSUBSCRIBED
    assert client.post(fresh_link).status_code == 200 and status() == Subscriber.Status.ACTIVE
    # ...and once they unsubscribe again, that link is out of date too.
    unsubscribe(client, Subscriber.objects.get())
    assert client.post(fresh_link).status_code == 410 and status() == Subscriber.Status.UNSUBSCRIBED


def test_a_pending_subscriber_who_unsubscribes_cannot_be_confirmed_by_the_first_link(client, outbox):
    subscribe(client)
    link = link_in(outbox_messages(outbox)[-1], "confirm")
    unsubscribe(client, Subscriber.objects.get())
    assert client.post(link).status_code == 410 and status() == Subscriber.Status.UNSUBSCRIBED


def test_an_unsubscribe_between_the_confirm_page_and_its_button_wins(client, outbox):
    subscribe(client)
    link = link_in(outbox_messages(outbox)[-1], "confirm")
    assert client.get(link).status_code == 200  # the page with the button is open...
    unsubscribe(client, Subscriber.objects.get())  # ...when the unsubscribe, from another email, lands
    assert client.post(link).status_code == 410 and status() == Subscriber.Status.UNSUBSCRIBED


def test_the_confirmation_reads_the_subscriber_again_under_its_lock(client):
    # The view loaded the subscriber while pending; the unsubscribe committed before the confirmation ran.
    seen_by_the_view = Subscriber.objects.create(email="r@example.com", status=Subscriber.Status.PENDING)
    unsubscribe(client, seen_by_the_view)
    with pytest.raises(StaleConfirmation):
        subscriber_confirm(subscriber=seen_by_the_view, opt_out_stamp=tokens.opt_out_stamp(None))
    assert status("r@example.com") == Subscriber.Status.UNSUBSCRIBED


def test_a_confirm_link_of_an_erased_subscriber_never_confirms_the_address_subscribed_again(client, outbox):
    subscribe(client)
    old_link = link_in(outbox_messages(outbox)[-1], "confirm")
    erased = Subscriber.objects.get()
    delete = f"/my-data/delete/{tokens.make_token(tokens.DELETE, erased.pk)}/"
    assert post(client, delete, {"confirm_delete": "yes"}).status_code == 200
    assert not Subscriber.objects.filter(pk=erased.pk).exists()
    assert client.post(old_link).status_code == 404
    subscribe(client)  # the same address, a new row
    assert client.post(old_link).status_code == 404 and status() == Subscriber.Status.PENDING


def test_a_link_sent_before_links_carried_the_opt_out_only_confirms_a_pending_subscriber(client):
    pending = Subscriber.objects.create(email="p@example.com", status=Subscriber.Status.PENDING)
    gone = Subscriber.objects.create(email="g@example.com", status=Subscriber.Status.UNSUBSCRIBED)
    assert client.post(f"/confirm/{tokens.make_token(tokens.CONFIRM, gone.pk)}/").status_code == 410
    assert client.post(f"/confirm/{tokens.make_token(tokens.CONFIRM, pending.pk)}/").status_code == 200
    assert (status("g@example.com"), status("p@example.com")) == ("unsubscribed", "active")


def _aged(signer: signing.TimestampSigner, value: int, *, days: int) -> str:
    import time
    from unittest import mock

    with mock.patch("time.time", return_value=time.time() - days * 86400):
        return signing.dumps(value, salt="walter.subscriber.confirm", compress=False)


# -- unsubscribe (RFC 8058) and preferences -----------------------------------------------------------------


def test_one_click_unsubscribe_is_a_post_without_cookies_or_csrf():
    subscriber = Subscriber.objects.create(email="u@example.com", status=Subscriber.Status.ACTIVE)
    url = f"/unsubscribe/{tokens.make_token(tokens.UNSUBSCRIBE, subscriber.pk)}/"
    strict = Client(enforce_csrf_checks=True)
    page = strict.get(url)
    assert page.status_code == 200 and page.content.count(b'type="submit"') == 1
    response = strict.post(url, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200  # no redirect
    assert Subscriber.objects.get(pk=subscriber.pk).status == Subscriber.Status.UNSUBSCRIBED


def test_preferences_change_tickers_pause_resume_and_reject_unknown_symbols(client):
    call_command("seed_demo", "--quiet")
    subscriber = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).first()
    url = f"/preferences/{tokens.make_token(tokens.PREFERENCES, subscriber.pk)}/"
    assert client.post(url, {"action": "tickers", "tickers": "NVDA, aapl"}).status_code == 200
    assert sorted(subscriber.tickers.values_list("symbol", flat=True)) == ["AAPL", "NVDA"]
    bad = client.post(url, {"action": "tickers", "tickers": "NVDA, QQQQZ"})
    assert bad.status_code == 400 and b"QQQQZ" in bad.content
    assert sorted(subscriber.tickers.values_list("symbol", flat=True)) == ["AAPL", "NVDA"]
    client.post(url, {"action": "pause"})
    assert Subscriber.objects.get(pk=subscriber.pk).status == Subscriber.Status.PAUSED
    client.post(url, {"action": "resume"})
    assert Subscriber.objects.get(pk=subscriber.pk).status == Subscriber.Status.ACTIVE
    assert client.post(url, {"action": "explode"}).status_code == 400
