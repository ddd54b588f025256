"""SES events through SNS: only genuine, recent messages for our topic, each once, change anything."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
import uuid
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.core.cache import cache

from subscriptions import sns
from subscriptions.models import SnsMessage, Subscriber
from tests.fakes.sns_server import FakeSns, Reply
from walter_site import ratelimit

pytestmark = pytest.mark.django_db

TOPIC = "arn:aws:sns:us-east-1:123456789012:walter-ses-events-prod"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
# The real ones, before the autouse fixture replaces the certificate fetch.
REAL_FETCH_CERTIFICATE = sns.fetch_certificate
REAL_HTTP_GET = sns.http_get


def _key_and_certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


KEY, CERT_PEM = _key_and_certificate()
OTHER_KEY, _ = _key_and_certificate()


@pytest.fixture(autouse=True)
def sns_setup(settings, monkeypatch):
    settings.SES_EVENTS_TOPIC_ARNS = [TOPIC]
    settings.SNS_MAX_AGE_SECONDS = 3600
    settings.SOFT_BOUNCE_LIMIT = 3
    cache.clear()
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return CERT_PEM

    monkeypatch.setattr(sns, "fetch_certificate", fetch)
    yield fetched
    cache.clear()


def signed(body: dict, *, version: str = "1", key=KEY) -> dict:
    message = {
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        **body,
    }
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(sns.string_to_sign(message), padding.PKCS1v15(), algorithm)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


def notification(event: dict, **kwargs) -> dict:
    return signed({"Type": "Notification", "Message": json.dumps(event), "Subject": "Amazon SES Email Event"}, **kwargs)


def bounce(address: str, kind: str = "Permanent") -> dict:
    return {
        "eventType": "Bounce",
        "bounce": {"bounceType": kind, "bouncedRecipients": [{"emailAddress": address}]},
        "mail": {"destination": [address]},
    }


def complaint(address: str) -> dict:
    return {"eventType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": address}]}}


def post(client, message) -> object:
    return client.post("/webhooks/ses/", data=json.dumps(message), content_type="text/plain; charset=UTF-8")


@pytest.fixture
def subscriber():
    return Subscriber.objects.create(email="reader@example.com", status=Subscriber.Status.ACTIVE)


def status_of(subscriber: Subscriber) -> str:
    return Subscriber.objects.get(pk=subscriber.pk).status


def test_a_signed_v1_hard_bounce_suppresses_the_address(client, subscriber):
    response = post(client, notification(bounce("Reader@Example.com")))
    assert response.status_code == 200
    assert status_of(subscriber) == Subscriber.Status.BOUNCED


def test_a_signed_v2_complaint_suppresses_the_address(client, subscriber):
    assert post(client, notification(complaint("reader@example.com"), version="2")).status_code == 200
    assert status_of(subscriber) == Subscriber.Status.COMPLAINED


def test_soft_bounces_suppress_after_the_limit_in_a_row_and_a_delivery_resets_the_count(client, subscriber):
    post(client, notification(bounce("reader@example.com", "Transient")))
    post(client, notification(bounce("reader@example.com", "Transient")))
    assert status_of(subscriber) == Subscriber.Status.ACTIVE
    post(client, notification({"eventType": "Delivery", "delivery": {"recipients": ["reader@example.com"]}}))
    assert Subscriber.objects.get(pk=subscriber.pk).soft_bounces == 0
    for _ in range(3):
        post(client, notification(bounce("reader@example.com", "Transient")))
    assert status_of(subscriber) == Subscriber.Status.BOUNCED


def test_the_classic_notification_format_is_understood_too(client, subscriber):
    event = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "reader@example.com"}]},
    }
    post(client, notification(event))
    assert status_of(subscriber) == Subscriber.Status.COMPLAINED


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda m: m.update(Message=m["Message"].replace("Permanent", "Permanent ")), "signature does not match"),
        (
            lambda m: m.update(Signature=signed({"Type": "Notification", "Message": "{}"}, key=OTHER_KEY)["Signature"]),
            "signature does not match",
        ),
        (lambda m: m.update(SigningCertURL="https://sns.evil.example.com/cert.pem"), "not served by SNS"),
        (
            lambda m: m.update(SigningCertURL="https://evil.example.com/sns.us-east-1.amazonaws.com.pem"),
            "not served by SNS",
        ),
        (lambda m: m.update(SigningCertURL="http://sns.us-east-1.amazonaws.com/cert.pem"), "not served by SNS"),
        (lambda m: m.update(TopicArn="arn:aws:sns:us-east-1:999999999999:someone-else"), "topic"),
        (lambda m: m.update(SignatureVersion="3"), "unknown signature version"),
    ],
    ids=["forged-message", "other-key", "foreign-host", "host-in-path", "plain-http", "unknown-topic", "version"],
)
def test_forged_or_foreign_messages_are_refused_and_change_nothing(client, subscriber, sns_setup, tamper, reason):
    message = notification(bounce("reader@example.com"))
    tamper(message)
    response = post(client, message)
    assert response.status_code == 403 and reason in response.content.decode()
    assert status_of(subscriber) == Subscriber.Status.ACTIVE
    assert all(url == CERT_URL for url in sns_setup)  # no certificate is ever fetched from elsewhere


def test_a_stale_message_is_refused(client, subscriber):
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    message = signed({"Type": "Notification", "Message": json.dumps(bounce("reader@example.com")), "Timestamp": old})
    response = post(client, message)
    assert response.status_code == 403 and "too old" in response.content.decode()
    assert status_of(subscriber) == Subscriber.Status.ACTIVE


def test_a_replayed_message_id_is_ignored(client, subscriber):
    message = notification(bounce("reader@example.com", "Transient"))
    assert post(client, message).content == b"ok"
    assert post(client, message).content == b"already processed"
    assert Subscriber.objects.get(pk=subscriber.pk).soft_bounces == 1


def test_the_certificate_is_fetched_once_and_cached(client, subscriber, sns_setup):
    for _ in range(3):
        post(client, notification(bounce("reader@example.com", "Transient")))
    assert sns_setup == [CERT_URL]


# -- the two URLs Walter visits at AWS, served by a fake on loopback -------------------------------------------


@pytest.fixture
def fake_aws(monkeypatch):
    """Every canonical SNS URL Walter visits goes to a fake on loopback, through the real ``http_get``."""
    with FakeSns(default=Reply(body=CERT_PEM)) as fake:
        fake.asked = []

        def to_loopback(url: str, **kwargs) -> bytes:
            fake.asked.append(url)
            parts = urlsplit(url)
            return REAL_HTTP_GET(fake.url + parts.path + (f"?{parts.query}" if parts.query else ""), **kwargs)

        monkeypatch.setattr(sns, "http_get", to_loopback)
        monkeypatch.setattr(sns, "fetch_certificate", REAL_FETCH_CERTIFICATE)
        yield fake


SUBSCRIBE_URL = f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=abc"


def confirmation(subscribe_url: str = SUBSCRIBE_URL) -> dict:
    return signed(
        {"Type": "SubscriptionConfirmation", "Message": "confirm", "SubscribeURL": subscribe_url, "Token": "abc"}
    )


def confirmations(fake) -> list[str]:
    return [p for p in fake.paths if "ConfirmSubscription" in p]


def test_the_subscription_is_confirmed_only_for_a_genuine_message(client, fake_aws):
    assert post(client, confirmation()).status_code == 200
    assert fake_aws.asked == [CERT_URL, SUBSCRIBE_URL]
    assert post(client, confirmation("https://attacker.example.com/confirm")).status_code == 403
    assert post(client, confirmation(SUBSCRIBE_URL.replace("ConfirmSubscription", "Unsubscribe"))).status_code == 403
    forged = confirmation()
    forged["Token"] = "other"
    assert post(client, forged).status_code == 403
    assert len(confirmations(fake_aws)) == 1


@pytest.mark.parametrize(
    "failure",
    [Reply(status=500), Reply(status=429), Reply(body=b"ok", delay=3)],
    ids=["error", "throttled", "slower-than-the-cap"],
)
def test_a_confirmation_that_fails_is_done_again_when_sns_delivers_it_again(client, fake_aws, failure):
    fake_aws.queue.extend([Reply(body=CERT_PEM), failure])
    message = confirmation()
    failed = post(client, message)
    assert failed.status_code == 503 and failed["Retry-After"]  # SNS retries a 5xx
    assert not SnsMessage.objects.exists()
    assert post(client, message).content == b"ok"
    assert post(client, message).content == b"already processed"
    assert len(confirmations(fake_aws)) == 2  # the failed one and the redelivery; never a third


@pytest.mark.parametrize(
    "reply", [Reply(body=b"late", delay=3), Reply(body=b"0123456789", trickle=0.5)], ids=["slow", "trickling"]
)
def test_an_outbound_fetch_gives_up_after_two_seconds_in_all(reply):
    # A trickling server answers each read well within the cap: only a cap on the total stops it.
    with FakeSns(default=reply) as fake, pytest.raises(sns.SnsUnavailable):
        REAL_HTTP_GET(fake.url + "/SimpleNotificationService-slow.pem")
    assert sns.FETCH_TIMEOUT_SECONDS <= 2


def test_a_resolver_that_does_not_answer_does_not_hold_the_request(monkeypatch):
    resolve = socket.getaddrinfo
    release, answered = threading.Event(), threading.Event()

    def stuck_resolver(host, *args, **kwargs):
        if host == "sns.stuck-resolver.test":
            release.wait(timeout=30)
            answered.set()
            host = "127.0.0.1"  # then the answer leads to a server that would answer at once
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stuck_resolver)
    with FakeSns(default=Reply(body=CERT_PEM)) as fake:
        port = urlsplit(fake.url).port
        try:
            with pytest.raises(sns.SnsUnavailable):
                REAL_HTTP_GET(f"http://sns.stuck-resolver.test:{port}/SimpleNotificationService-x.pem")
            assert not answered.is_set()  # the request gave up while the resolver was still waiting
        finally:
            release.set()
        assert REAL_HTTP_GET(f"http://localhost:{port}/SimpleNotificationService-x.pem") == CERT_PEM


def test_an_upper_case_certificate_host_is_accepted_and_fetched_in_canonical_form(client, subscriber, fake_aws):
    message = notification(bounce("reader@example.com"))
    message["SigningCertURL"] = "https://SNS.US-East-1.AmazonAWS.com:443/SimpleNotificationService-test.pem"
    assert post(client, message).status_code == 200
    assert status_of(subscriber) == Subscriber.Status.BOUNCED
    assert fake_aws.asked == [CERT_URL]


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com/a b.pem",
        "https://sns.us-east-1.amazonaws.com/../SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com/%2e%2e/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com//evil.example.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem?x=1",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem#x",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem\r\nHost: evil",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.PEM.exe",
        "HTTPS://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-test.pem",
    ],
)
def test_odd_certificate_urls_are_refused_without_any_fetch(client, subscriber, fake_aws, url):
    message = notification(bounce("reader@example.com"))
    message["SigningCertURL"] = url
    response = post(client, message)
    assert response.status_code == 403 and b"not served by SNS" in response.content
    assert fake_aws.paths == [] and status_of(subscriber) == Subscriber.Status.ACTIVE


@pytest.mark.parametrize(("served", "answer"), [(404, 403), (503, 503)], ids=["not-at-aws", "aws-down"])
def test_a_flood_naming_a_certificate_aws_does_not_serve_fetches_it_once(client, subscriber, fake_aws, served, answer):
    fake_aws.default = Reply(status=served)
    codes = [post(client, notification(bounce("reader@example.com"))).status_code for _ in range(5)]
    assert codes == [answer] * 5
    assert len(fake_aws.paths) == 1 and status_of(subscriber) == Subscriber.Status.ACTIVE


def test_made_up_certificate_names_are_fetched_at_most_the_limit_per_minute(
    client, subscriber, fake_aws, settings, monkeypatch
):
    settings.SNS_CERTIFICATE_FETCHES_PER_MINUTE = 3
    fake_aws.default = Reply(status=404)
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: 1_800_000_000.0))  # one fixed window
    codes = []
    for n in range(6):
        message = notification(bounce("reader@example.com"))
        message["SigningCertURL"] = f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{n}.pem"
        codes.append(post(client, message).status_code)
    assert codes == [403, 403, 403, 503, 503, 503]
    assert len(fake_aws.paths) == 3


def test_malformed_bodies_and_other_methods(client):
    assert client.post("/webhooks/ses/", data="{not json", content_type="text/plain").status_code == 400
    assert client.post("/webhooks/ses/", data="[1, 2]", content_type="text/plain").status_code == 403
    assert client.get("/webhooks/ses/").status_code == 405


# -- what SES reports lands on the delivery too --------------------------------------------------------------


@pytest.fixture
def deliveries(subscriber):
    from newsletters.models import Delivery, Issue

    first = Issue.objects.create(date=dt.date(2026, 11, 19))
    second = Issue.objects.create(date=dt.date(2026, 11, 20))
    return (
        Delivery.objects.create(issue=first, subscriber=subscriber, status="sent", message_id="ses-0001"),
        Delivery.objects.create(issue=second, subscriber=subscriber, status="sent", message_id="ses-0002"),
    )


def test_an_event_is_recorded_on_the_delivery_its_tag_names(client, subscriber, deliveries):
    older, newer = deliveries
    event = bounce("reader@example.com", kind="Transient")
    event["mail"]["tags"] = {"delivery": [str(newer.token)], "ses:configuration-set": ["walter-prod"]}
    assert post(client, notification(event)).status_code == 200
    newer.refresh_from_db(), older.refresh_from_db()
    assert newer.feedback == "soft_bounce" and newer.feedback_at is not None
    assert older.feedback == ""


def test_without_a_tag_the_ses_message_id_finds_the_delivery_and_worse_news_wins(client, subscriber, deliveries):
    older, _ = deliveries
    delivered = {
        "eventType": "Delivery",
        "delivery": {"recipients": ["reader@example.com"]},
        "mail": {"messageId": "ses-0001"},
    }
    complained = {**complaint("reader@example.com"), "mail": {"messageId": "ses-0001"}}
    post(client, notification(complained))
    post(client, notification(delivered))  # arrives late: a complaint is not undone by it
    older.refresh_from_db()
    assert older.feedback == "complained"


@pytest.mark.parametrize("tags", [{"delivery": ["not-a-uuid"]}, {"delivery": "x"}, {"delivery": [7]}, []])
def test_odd_tags_are_ignored(client, subscriber, deliveries, tags):
    event = bounce("reader@example.com")
    event["mail"]["tags"] = tags
    assert post(client, notification(event)).status_code == 200
    assert {d.feedback for d in type(deliveries[0]).objects.all()} == {""}
