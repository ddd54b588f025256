"""Links that act as the subscriber: none in the public "view in browser" copy; downloading and deleting the data
need a fresh, short-lived link sent to the address."""

from __future__ import annotations

import email
import json
import re
import time
from email import policy
from html import unescape
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

from newsletters.archive import archive_read_html
from newsletters.links import view_url
from newsletters.models import Delivery
from subscriptions import links, tokens
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create
from tests.fakes.email_backends import ScriptedSESBackend

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

ADDRESS = "ada@example.com"


def messages_in(outbox: Path) -> list[email.message.EmailMessage]:
    paths = sorted(outbox.glob("*.eml")) if outbox.exists() else []
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in paths]


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
def sent(trading_day, outbox) -> Delivery:
    """Ada's issue of the day, sent and archived; the outbox is emptied so later emails stand alone."""
    subscriber_create(email=ADDRESS, symbols=["AAPL", "MSFT"], status=Subscriber.Status.ACTIVE)
    call_command("run_daily", "--date", trading_day.isoformat())
    delivery = Delivery.objects.select_related("subscriber").get(status=Delivery.Status.SENT)
    for path in outbox.glob("*.eml"):
        path.unlink()
    return delivery


def test_no_link_in_the_view_in_browser_copy_acts_as_the_subscriber(sent, outbox, django_capture_on_commit_callbacks):
    subscriber = sent.subscriber
    anonymous = Client()
    page = anonymous.get(local(view_url(str(sent.token))))
    assert page.status_code == 200
    # The page's own URL is a capability: a click to another site must not carry it in the Referer.
    assert page["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin", "origin")
    html = page.content.decode()
    targets = {unescape(u) for u in re.findall(r"""(?:href|action)\s*=\s*["']([^"']*)["']""", html, re.I)}
    assert targets, "the copy has its links"
    # The archive holds exactly what was sent, personal links included; the page shows none of them.
    archived = archive_read_html(sent.archive_key)
    personal = set(re.findall(r"""https?://[^"'\s]+/(?:preferences|unsubscribe)/[^"'\s]+/""", archived))
    assert len(personal) == 2 and ADDRESS in archived
    assert all(url not in html for url in personal)
    assert ADDRESS not in html

    # Follow every link as someone it was forwarded to would, and press every button of what it opens.
    for url in sorted(targets):
        if url.startswith(("mailto:", "#")) or (urlsplit(url).netloc and not url.startswith("http://localhost")):
            continue
        response = anonymous.get(local(url))
        assert response.status_code in (200, 302, 404), url
        if response.status_code != 200 or b"<form" not in response.content:
            continue
        for data in (
            {"action": "export"},
            {"action": "delete", "confirm_delete": "yes"},
            {"action": "unsubscribe"},
            {"confirm_delete": "yes"},
            {},
        ):
            with django_capture_on_commit_callbacks(execute=True):
                answer = anonymous.post(local(url), data)
            assert answer.get("Content-Type", "") != "application/json", url
    subscriber.refresh_from_db()  # neither deleted nor unsubscribed
    assert subscriber.status == Subscriber.Status.ACTIVE
    assert messages_in(outbox) == [], "no link was even asked for in the subscriber's name"


def data_link(outbox: Path, kind: str) -> str:
    (message,) = messages_in(outbox)
    assert message["To"] == ADDRESS
    text = message.get_body(("plain",)).get_content()
    return local(re.search(rf"https?://\S+/my-data/{kind}/\S+/", text).group(0))


def test_download_my_data_is_emailed_as_a_fresh_link_whose_page_downloads(
    sent, client, outbox, django_capture_on_commit_callbacks
):
    preferences = local(links.preferences_url(sent.subscriber.pk))
    with django_capture_on_commit_callbacks(execute=True):
        asked = client.post(preferences, {"action": "export"})
    assert asked.status_code == 200 and asked.get("Content-Type", "").startswith("text/html")
    assert b"emailed a link" in asked.content
    url = data_link(outbox, "download")

    page = client.get(url)
    assert page.status_code == 200 and b"<form" in page.content
    download = client.post(url)
    assert download["Content-Type"] == "application/json"
    data = json.loads(download.content)
    assert data["email"] == ADDRESS and data["emails"][0]["date"] == sent.issue.date.isoformat()


def test_the_fresh_link_deletes_once_after_a_confirmation(
    sent, client, outbox, archive_dir, django_capture_on_commit_callbacks
):
    subscriber = sent.subscriber
    preferences = local(links.preferences_url(subscriber.pk))
    with django_capture_on_commit_callbacks(execute=True):
        asked = client.post(preferences, {"action": "delete", "confirm_delete": "yes"})
    assert asked.status_code == 200 and Subscriber.objects.filter(pk=subscriber.pk).exists()
    url = data_link(outbox, "delete")

    assert client.get(url).status_code == 200
    refused = client.post(url, {})
    assert refused.status_code == 400 and b"Tick the box" in refused.content
    assert Subscriber.objects.filter(pk=subscriber.pk).exists()

    archived = archive_dir / sent.archive_key
    assert archived.exists()
    with django_capture_on_commit_callbacks(execute=True):
        deleted = client.post(url, {"confirm_delete": "yes"})
    assert deleted.status_code == 200 and b"deleted" in deleted.content
    assert not Subscriber.objects.filter(pk=subscriber.pk).exists()
    sent.refresh_from_db()
    assert (sent.subscriber_id, sent.email, sent.archive_key) == (None, "", "")
    assert not archived.exists() and not archived.with_suffix(".eml").exists()

    again = client.post(url, {"confirm_delete": "yes"})
    assert again.status_code == 404 and b"not valid" in again.content
    assert client.get(preferences).status_code == 404


@pytest.mark.parametrize("purpose", [tokens.EXPORT, tokens.DELETE])
def test_a_data_link_older_than_its_lifetime_is_refused_with_a_clear_page(sent, client, settings, purpose):
    subscriber = sent.subscriber
    made = time.time() - settings.DATA_LINK_MAX_AGE - 5
    with mock.patch("django.core.signing.time.time", return_value=made):
        url = local(links.data_link_url(purpose, subscriber.pk))
    for response in (client.get(url), client.post(url, {"confirm_delete": "yes"})):
        assert response.status_code == 410
        assert b"This link has expired" in response.content
    assert Subscriber.objects.filter(pk=subscriber.pk).exists()

    fresh = local(links.data_link_url(purpose, subscriber.pk))
    assert client.get(fresh).status_code == 200, "the same link, made now, works"


def test_a_data_link_is_good_for_its_purpose_only(sent, client):
    subscriber = sent.subscriber
    export_token = tokens.make_token(tokens.EXPORT, subscriber.pk)
    preferences_token = tokens.make_token(tokens.PREFERENCES, subscriber.pk)
    assert client.post(f"/my-data/delete/{export_token}/", {"confirm_delete": "yes"}).status_code == 404
    assert client.post(f"/my-data/delete/{preferences_token}/", {"confirm_delete": "yes"}).status_code == 404
    assert client.post(f"/my-data/download/{preferences_token}/").status_code == 404
    assert Subscriber.objects.filter(pk=subscriber.pk).exists()


def test_asking_for_data_links_again_and_again_is_limited(
    sent, client, outbox, settings, django_capture_on_commit_callbacks
):
    settings.DATA_LINK_LIMIT_PER_HOUR = 2
    preferences = local(links.preferences_url(sent.subscriber.pk))
    answers = []
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            answers.append(client.post(preferences, {"action": "export"}).status_code)
    assert answers == [200, 200, 429]
    assert len(messages_in(outbox)) == 2


def test_when_the_link_cannot_be_emailed_the_page_says_so_and_nothing_changes(
    sent, client, outbox, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.fakes.email_backends.ScriptedSESBackend"
    ScriptedSESBackend.reset({ADDRESS: [("InternalFailure", f"could not deliver to {ADDRESS}")]})
    preferences = local(links.preferences_url(sent.subscriber.pk))
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(preferences, {"action": "delete"})
    assert answer.status_code == 503 and b"could not send the email" in answer.content
    assert Subscriber.objects.filter(pk=sent.subscriber.pk, status=Subscriber.Status.ACTIVE).exists()

    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(preferences, {"action": "delete"})
    assert again.status_code == 200 and len(ScriptedSESBackend.sent) == 1, "the next try goes out"


def test_delete_looks_destructive_and_asks_for_a_confirmation(client):
    from subscriptions import tokens
    from subscriptions.models import Subscriber
    from subscriptions.services import subscriber_create

    reader = subscriber_create(email="del@example.com", symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    page = client.get(f"/preferences/{tokens.make_token(tokens.PREFERENCES, reader.pk)}/").content.decode()
    assert 'value="delete" class="destructive"' in page and 'value="export" class="secondary"' in page
    confirm = client.get(f"/my-data/delete/{tokens.make_token(tokens.DELETE, reader.pk)}/").content.decode()
    assert 'type="checkbox" name="confirm_delete"' in confirm and 'class="destructive confirm"' in confirm
