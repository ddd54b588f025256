"""The daily email through Amazon SES (django-anymail's SES v2 backend) against moto: the raw message as SES got it."""

from __future__ import annotations

import email
import re
from email import policy
from urllib.parse import urlsplit

import boto3
import pytest
from django.core.mail import get_connection
from django.core.management import call_command
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from newsletters.compose import ComposedEmail
from newsletters.messages import message_build
from newsletters.models import Delivery
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create

pytestmark = pytest.mark.django_db

SENDER = "walter@news.example.com"
READERS = {"ann@example.com": ["AAPL", "MSFT"], "bob@example.com": ["NVDA"]}


@pytest.fixture
def ses_settings(settings, aws_env):
    settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = f"Walter <{SENDER}>"
    settings.SITE_URL = "https://walter.example.com"
    settings.NEWSLETTER_UNSUBSCRIBE_MAILTO = "unsubscribe@news.example.com"
    settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_CLIENT_PARAMS": {"region_name": "us-east-1"}}
    for address, symbols in READERS.items():
        subscriber_create(email=address, symbols=symbols, status=Subscriber.Status.ACTIVE)
    return settings


def raw_messages() -> list[email.message.EmailMessage]:
    backend = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    return [email.message_from_bytes(m.raw_data.encode(), policy=policy.default) for m in backend.sent_messages]


def test_each_reader_gets_one_complete_message_through_ses(ses_settings, trading_day, client):
    with mock_aws():
        boto3.client("sesv2", region_name="us-east-1").create_email_identity(EmailIdentity=SENDER)
        call_command("run_daily", "--date", trading_day.isoformat())
        messages = raw_messages()

    assert sorted(m["To"] for m in messages) == sorted(READERS)
    for message in messages:
        delivery = Delivery.objects.get(email=message["To"], issue__date=trading_day)
        assert delivery.status == Delivery.Status.SENT
        assert delivery.message_id and delivery.message_id != ""  # SES's own id, for matching its events
        assert message["Message-ID"] == f"<{delivery.token}@news.example.com>"
        assert message["X-Walter-Delivery"] == str(delivery.token)

        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        for symbol in READERS[message["To"]]:
            assert symbol in text and f">{symbol}<" in html
        assert "Not investment advice" in text and "Not investment advice" in html

        # Every chart the HTML shows travels with it as an inline PNG.
        cids = set(re.findall(r'src="cid:([^"]+)"', html))
        images = {p["Content-ID"].strip("<>"): p for p in message.walk() if p.get_content_type() == "image/png"}
        assert cids and cids == set(images)
        assert len(cids) == len(READERS[message["To"]])
        for image in images.values():
            assert image.get_payload(decode=True).startswith(b"\x89PNG")

        # RFC 8058: an https URL and a mailto, and the one-click header.
        header = message["List-Unsubscribe"]
        https = re.search(r"<(https://[^>]+)>", header).group(1)
        assert "<mailto:unsubscribe@news.example.com?subject=unsubscribe>" in header
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert https.startswith("https://walter.example.com/")
        response = client.post(urlsplit(https).path)  # what a mail client does: no cookie, no CSRF token
        assert response.status_code == 200
        assert Subscriber.objects.get(email=message["To"]).status == Subscriber.Status.UNSUBSCRIBED


def test_an_unverified_sender_is_rejected_and_recorded(ses_settings, trading_day):
    with mock_aws():  # no identity created: SES refuses every message
        call_command("run_daily", "--date", trading_day.isoformat())
        assert raw_messages() == []
    for delivery in Delivery.objects.filter(issue__date=trading_day):
        assert delivery.status == Delivery.Status.FAILED
        assert not delivery.retryable and "MessageRejected" in delivery.error


def test_the_configuration_set_and_the_delivery_tag_reach_ses(ses_settings):
    ses_settings.ANYMAIL = {**ses_settings.ANYMAIL, "AMAZON_SES_CONFIGURATION_SET_NAME": "walter-events"}
    token = "2b9d2a56-8f6a-4d8e-9a57-3f1f8a0c1d11"
    message = message_build(
        composed=ComposedEmail(subject="s", html="<p>h</p>", text="t"),
        to="ann@example.com",
        token=token,
        unsubscribe_url="https://walter.example.com/unsubscribe/x/",
    )
    backend = get_connection()
    payload = backend.build_message_payload(message, backend.send_defaults)
    assert payload.params["ConfigurationSetName"] == "walter-events"
    assert {"Name": "delivery", "Value": token} in payload.params["EmailTags"]


@pytest.mark.slow
def test_sending_over_the_wire_to_moto_server(ses_settings, trading_day, moto_server):
    ses_settings.ANYMAIL = {
        **ses_settings.ANYMAIL,
        "AMAZON_SES_CLIENT_PARAMS": {"region_name": "us-east-1", "endpoint_url": moto_server},
    }
    boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server).create_email_identity(EmailIdentity=SENDER)
    call_command("run_daily", "--date", trading_day.isoformat())

    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}
    ids = list(Delivery.objects.values_list("message_id", flat=True))
    assert len(set(ids)) == len(READERS) and not any(i.startswith("<") for i in ids), "SES's ids, not ours"
    quota = boto3.client("ses", region_name="us-east-1", endpoint_url=moto_server).get_send_quota()
    assert quota["SentLast24Hours"] >= len(READERS)  # moto counts the envelope and the To header alike


def test_ses_client_uses_botocore_standard_retries(ses_settings):
    backend = get_connection()
    backend.open()
    try:
        assert backend.client.meta.config.retries["mode"] == "standard"
    finally:
        backend.close()


def test_archive_on_s3_is_private_encrypted_and_served_by_view_in_browser(settings, aws_env, trading_day, client):
    from django.core.files.storage import storages

    settings.STORAGES = {
        **settings.STORAGES,
        "archive": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "walter-archive-test",
                "default_acl": None,
                "querystring_auth": True,
                "file_overwrite": True,
                "object_parameters": {"ServerSideEncryption": "AES256"},
            },
        },
    }
    storages._storages = {}
    subscriber_create(email="ann@example.com", symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="walter-archive-test")
        call_command("run_daily", "--date", trading_day.isoformat())
        delivery = Delivery.objects.get()
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="walter-archive-test")["Contents"])
        chart = "emails/2026/11/20/charts/chart-aapl@walter.png"
        assert keys == sorted([delivery.archive_key, delivery.archive_key.replace(".html", ".eml"), chart])
        assert "ann" not in delivery.archive_key
        head = s3.head_object(Bucket="walter-archive-test", Key=delivery.archive_key)
        assert head["ServerSideEncryption"] == "AES256"
        grants = s3.get_object_acl(Bucket="walter-archive-test", Key=delivery.archive_key)["Grants"]
        assert all("AllUsers" not in str(g.get("Grantee")) for g in grants)

        from newsletters.links import view_url

        page = client.get(urlsplit(view_url(str(delivery.token))).path)
        assert page.status_code == 200 and "AAPL" in page.content.decode()
        image = client.get(re.search(r'src="(/email/[^"]+/images/[^"]+)"', page.content.decode()).group(1))
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    storages._storages = {}
