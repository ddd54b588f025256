"""Whatever anyone sends to the public endpoints, the answer is never a server error and bad input stores nothing."""

from __future__ import annotations

import base64
import json
import string
from urllib.parse import quote, quote_from_bytes

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import Client
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from markets.providers.demo import DEMO_UNIVERSE
from subscriptions import sns, tokens
from subscriptions.models import SnsMessage, Subscriber
from tests.test_sns_webhook import CERT_PEM, CERT_URL, TOPIC, notification, signed

pytestmark = [
    pytest.mark.django_db,
    # What visitors type ends up in cache keys (rate limits, search results): memcached would refuse unsafe ones.
    pytest.mark.filterwarnings("error::django.core.cache.backends.base.CacheKeyWarning"),
]

PROPERTY = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any text a form or a URL can carry: control characters and NUL included, lone surrogates excluded (they have no
# UTF-8 encoding, so no request can hold one).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=600)
LONG_TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=1000, max_size=5000)
TEXT = st.one_of(
    ANY_TEXT,
    LONG_TEXT,
    st.sampled_from(["", " ", "\x00", "a\x00b", "\u202e", "\ufeff", "\U0001d518\U0001d52b\U0001d526"]),
)
LISTED = ["AAPL", "MSFT", "NVDA", "aapl", "GOOGL"]
SYMBOLS = st.lists(
    st.one_of(st.sampled_from(LISTED), st.text(string.ascii_uppercase + string.digits + ".-", max_size=12), TEXT),
    max_size=25,
).map(", ".join)
ADDRESSES = st.one_of(TEXT, st.emails(), st.builds(lambda local: f"{local}@example.com", TEXT))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=20,
)


@pytest.fixture(autouse=True)
def no_limits(settings):
    # The limits have their own tests; here they would turn every later example into a 429.
    settings.SUBSCRIBE_LIMIT_PER_IP = 10**9
    settings.SUBSCRIBE_LIMIT_PER_EMAIL = 10**9
    settings.TICKER_SEARCH_LIMIT_PER_MINUTE = 10**9
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def reader() -> Subscriber:
    """Someone already subscribed, who no stranger's request may change."""
    return Subscriber.objects.create(email="reader@example.com", status=Subscriber.Status.ACTIVE)


def unchanged(reader: Subscriber) -> bool:
    now = Subscriber.objects.get(pk=reader.pk)
    return (now.status, now.soft_bounces, now.unsubscribed_at) == (reader.status, 0, None)


# -- subscribe --------------------------------------------------------------------------------------------


@PROPERTY
@given(address=ADDRESSES, symbols=SYMBOLS)
@example(address="a@" + ".".join(["İ" * 60] * 4) + ".com", symbols="AAPL")  # 249 characters, 489 once lower-cased
@example(address="ada@example.com", symbols="AAPL, " * 21)
@example(address="ada@example.com\x00", symbols="AAPL")
@example(address="ada@example.com", symbols="AAPL\x00")
@example(address="0@0.AA", symbols="NKE")
def test_subscribe_never_fails_and_stores_only_a_valid_request(client, reader, address, symbols):
    before = Subscriber.objects.count()
    response = client.post("/", {"email": address, "tickers": symbols})
    assert response.status_code in (302, 400), response.status_code
    if response.status_code == 400:
        assert Subscriber.objects.count() == before
    else:
        stored = Subscriber.objects.get(email=address.strip().lower())
        assert stored.status == Subscriber.Status.PENDING and len(stored.email) <= 254
        # Random letters can spell a listed symbol ("NKE"): what is stored must be listed and must have been asked for.
        stored_symbols = set(stored.tickers.values_list("symbol", flat=True))
        assert stored_symbols <= set(DEMO_UNIVERSE)
        assert stored_symbols <= {s.strip().upper() for s in symbols.split(",")}
    assert unchanged(reader)


@PROPERTY
@given(body=st.binary(max_size=2000))
@example(body=b"email=%FF%FE&tickers=AAPL")
@example(body=b"email=a%00@example.com&tickers=AAPL")
def test_subscribe_with_any_form_encoded_bytes_never_fails(client, reader, body):
    before = Subscriber.objects.count()
    response = client.post(
        "/", data=quote_from_bytes(body, safe="=&"), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code < 500
    if response.status_code != 302:
        assert Subscriber.objects.count() == before
    assert unchanged(reader)


def test_an_address_too_long_once_lower_cased_is_refused_by_the_model_too():
    subscriber = Subscriber(email="a@" + ".".join(["İ" * 60] * 4) + ".com")
    with pytest.raises(ValidationError, match="too long once lower-cased"):
        subscriber.full_clean()


# -- ticker search ----------------------------------------------------------------------------------------


@PROPERTY
@given(query=TEXT)
def test_ticker_search_answers_any_query_without_failing(client, query):
    response = client.get("/api/tickers/search", {"q": query})
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        results = response.json()["results"]
        assert len(results) <= 8 and all(set(r) == {"symbol", "name"} for r in results)


@PROPERTY
@given(raw=st.binary(max_size=300))
def test_ticker_search_survives_any_query_string_bytes(client, raw):
    response = client.get(f"/api/tickers/search?q={quote_from_bytes(raw)}&q=second")
    assert response.status_code < 500


# -- links with tokens ------------------------------------------------------------------------------------


@PROPERTY
@given(
    token=TEXT, method=st.sampled_from(["get", "post"]), page=st.sampled_from(["unsubscribe", "confirm", "preferences"])
)
@example(token=".eJwrSS0uAQAEXQHb:1vNGpo:xyz", method="post", page="unsubscribe")  # "compressed" but unsigned
@example(token="1:abc", method="post", page="unsubscribe")
def test_a_forged_token_changes_nothing(reader, token, method, page):
    client = Client(enforce_csrf_checks=page == "unsubscribe")
    url = f"/{page}/{quote(token, safe='')}/"
    response = getattr(client, method)(url, {"action": "unsubscribe"} if method == "post" else None)
    assert response.status_code in (403, 404), response.status_code  # 403: CSRF on the pages that need it
    assert unchanged(reader)


def test_the_genuine_token_still_works_beside_the_forged_ones(reader):
    url = f"/unsubscribe/{tokens.make_token(tokens.UNSUBSCRIBE, reader.pk)}/"
    assert Client(enforce_csrf_checks=True).post(url).status_code == 200
    assert Subscriber.objects.get(pk=reader.pk).status == Subscriber.Status.UNSUBSCRIBED


# -- the SNS endpoint -------------------------------------------------------------------------------------


@pytest.fixture
def sns_topic(settings, monkeypatch):
    settings.SES_EVENTS_TOPIC_ARNS = [TOPIC]
    settings.SNS_MAX_AGE_SECONDS = 3600
    monkeypatch.setattr(sns, "fetch_certificate", lambda url: CERT_PEM)


def post_sns(client, body: bytes | str):
    # Lower-case "utf-8": the test client then sends bytes exactly as given instead of re-encoding them.
    return client.post("/webhooks/ses/", data=body, content_type="text/plain; charset=utf-8")


@PROPERTY
@given(body=st.one_of(st.binary(max_size=3000), TEXT, JSON.map(json.dumps)))
@example(body="[" * 100_000 + "]" * 100_000)  # deeper than Python's recursion limit
@example(body='{"a":' * 50_000 + "1" + "}" * 50_000)
@example(body=b"\xff\xfe{}")
def test_the_ses_endpoint_refuses_any_body_without_failing(client, reader, sns_topic, body):
    before = SnsMessage.objects.count()
    response = post_sns(client, body)
    assert 400 <= response.status_code < 500
    assert SnsMessage.objects.count() == before
    assert unchanged(reader)


CERT_URLS = st.one_of(
    st.just(CERT_URL),
    st.builds(lambda tail: f"https://sns.us-east-1.amazonaws.com{tail}", TEXT),
    st.sampled_from(
        [
            "https://sns.us-east-1.amazonaws.com:abc/cert.pem",  # a port that is not a number
            "https://sns.us-east-1.amazonaws.com:99999/cert.pem",  # out of range
            "https://[sns.us-east-1.amazonaws.com/cert.pem",  # an unclosed IPv6 bracket
            "https://sns.us-east-1.amazonaws.com\x00.evil.example/cert.pem",
        ]
    ),
    TEXT,
)
SNS_LIKE = st.fixed_dictionaries(
    {"TopicArn": st.one_of(st.just(TOPIC), TEXT), "SigningCertURL": CERT_URLS},
    optional={
        "Type": st.one_of(
            st.sampled_from(["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]), TEXT
        ),
        "MessageId": TEXT,
        "Message": TEXT,
        "Timestamp": st.one_of(TEXT, st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())),
        "SignatureVersion": st.one_of(st.sampled_from(["1", "2"]), TEXT),
        "Signature": st.one_of(TEXT, st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())),
        "Subject": TEXT,
        "Token": TEXT,
        "SubscribeURL": CERT_URLS,
        "extra": JSON,
    },
)


@PROPERTY
@given(message=SNS_LIKE)
@example(message={"TopicArn": TOPIC, "SigningCertURL": "https://sns.us-east-1.amazonaws.com:abc/cert.pem"})
@example(message={"TopicArn": TOPIC, "SigningCertURL": "https://[sns.us-east-1.amazonaws.com/cert.pem"})
def test_an_sns_shaped_message_without_a_valid_signature_is_refused(client, reader, sns_topic, message):
    before = SnsMessage.objects.count()
    response = post_sns(client, json.dumps(message))
    assert response.status_code == 403, response.content
    assert SnsMessage.objects.count() == before
    assert unchanged(reader)


EVENTS = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"eventType": st.sampled_from(["Bounce", "Complaint", "Delivery", "Open"])},
        optional={
            "notificationType": st.sampled_from(["Bounce", "Complaint", "Delivery"]),
            "bounce": st.one_of(JSON, st.fixed_dictionaries({"bounceType": JSON, "bouncedRecipients": JSON})),
            "complaint": st.one_of(JSON, st.fixed_dictionaries({"complainedRecipients": JSON})),
            "delivery": st.one_of(JSON, st.fixed_dictionaries({"recipients": JSON})),
        },
    ),
)


@PROPERTY
@given(event=EVENTS)
@example(event={"eventType": "Bounce", "bounce": [1]})
@example(event={"eventType": "Bounce", "bounce": {"bouncedRecipients": 3}})
@example(event={"eventType": "Delivery", "delivery": {"recipients": "reader@example.com"}})
@example(event={"eventType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": None}]}})
@example(event={"eventType": "Delivery", "delivery": {"recipients": ["\x00"]}})
@example(event={"eventType": "Bounce", "bounce": {"bouncedRecipients": [{"emailAddress": "reader@example.com\x00"}]}})
def test_a_signed_but_odd_ses_event_never_fails_and_touches_no_one_it_does_not_name(client, reader, sns_topic, event):
    response = post_sns(client, json.dumps(notification(event)))
    assert response.status_code == 200, response.content
    assert unchanged(reader)


def test_a_signed_message_holding_nul_is_refused(client, reader, sns_topic):
    response = post_sns(client, json.dumps(signed({"Type": "Notification", "Message": "{}", "Subject": "a\x00b"})))
    assert response.status_code == 403
    assert not SnsMessage.objects.exists()


@PROPERTY
@given(text=TEXT)
@example(text="[" * 100_000 + "]" * 100_000)
def test_a_signed_notification_whose_message_is_not_an_event_is_accepted_and_ignored(client, reader, sns_topic, text):
    response = post_sns(client, json.dumps(signed({"Type": "Notification", "Message": text})))
    assert response.status_code == (403 if "\x00" in text else 200), response.content
    assert unchanged(reader)
