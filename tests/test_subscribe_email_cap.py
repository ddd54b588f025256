"""A subscribe never waits long on the email service: the confirmation goes through SES in one attempt capped at
WEB_EMAIL_TIMEOUT; a slow or failing SES gives the visitor a clear "try again", and the next try sends it."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from django.core.cache import cache

from subscriptions.models import Subscriber

# Real commits: the confirmation is sent on commit, inside the request, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

SENDER = "walter@news.example.com"


class SlowSES(BaseHTTPRequestHandler):
    """Answers nothing for ``delay`` seconds: an SES endpoint having a bad day. Counts the requests it gets."""

    delay = 10.0
    requests = 0

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.delay)
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def subscribe(client):
    def post():
        return client.post("/", {"email": "ada@example.com", "tickers": "AAPL, MSFT"})

    return post


@pytest.fixture
def slow_ses(settings, aws_env):
    SlowSES.requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowSES)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = f"Walter <{SENDER}>"
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "AMAZON_SES_CLIENT_PARAMS": {
            "region_name": "us-east-1",
            "endpoint_url": f"http://127.0.0.1:{server.server_port}",
            # What production configures for the daily job: long waits and retries, fine there, not for a visitor.
            "config": {"retries": {"mode": "standard", "max_attempts": 3}, "connect_timeout": 5, "read_timeout": 20},
        },
    }
    settings.WEB_EMAIL_TIMEOUT = 1.0
    cache.clear()
    yield settings
    cache.clear()  # the subscribe limits counted here must not reach another test
    server.shutdown()
    server.server_close()


def test_a_slow_email_service_gets_a_try_again_within_the_cap(subscribe, slow_ses):
    started = time.monotonic()
    response = subscribe()
    took = time.monotonic() - started
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert "could not send the confirmation email just now" in response.content.decode()
    assert took < 5, f"the visitor waited {took:.1f} s"  # uncapped: 3 attempts of a 20 s read
    assert SlowSES.requests == 1, "one attempt, no retry while the visitor waits"
    # Nothing is lost: the address is stored, pending, and subscribing again sends the link.
    assert Subscriber.objects.get().status == Subscriber.Status.PENDING


def test_the_next_try_sends_the_confirmation(subscribe, slow_ses, moto_server):
    assert subscribe().status_code == 503
    endpoint = {**slow_ses.ANYMAIL["AMAZON_SES_CLIENT_PARAMS"], "endpoint_url": moto_server}
    slow_ses.ANYMAIL = {**slow_ses.ANYMAIL, "AMAZON_SES_CLIENT_PARAMS": endpoint}
    boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server).create_email_identity(EmailIdentity=SENDER)
    response = subscribe()
    assert response.status_code == 302 and response["Location"].endswith("/check-your-inbox/")
    quota = boto3.client("ses", region_name="us-east-1", endpoint_url=moto_server).get_send_quota()
    assert quota["SentLast24Hours"] >= 1
