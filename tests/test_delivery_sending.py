"""Sending at the account's pace, and what each SES answer does to a delivery and to the run."""

from __future__ import annotations

import threading

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.core.management.base import CommandError

from newsletters.models import DailyRun, Delivery
from newsletters.sending import FAILED, NOT_SENT, REJECTED, SENT, Sender, refusal_of
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create, subscriber_set_status
from tests.fakes.email_backends import ScriptedSESBackend, ses_error
from walter_site.ratelimit import Pacer

BACKEND = "tests.fakes.email_backends.ScriptedSESBackend"
ADDRESSES = [f"reader{i}@example.com" for i in range(5)]


class VirtualClock:
    """Shared by the sending threads: a sleep moves time to the moment the sleeper was waiting for."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()
        self._read = threading.local()

    def time(self) -> float:
        with self._lock:
            self._read.at = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now = max(self.now, getattr(self._read, "at", self.now) + seconds)


class GrantRecordingPacer(Pacer):
    """Remembers, per sending thread, the start of the slot it was last granted.

    A send is logged at its granted slot, not at the shared virtual clock's reading: another thread's sleep may
    already have moved that clock a few slots further, which would pile sends of earlier slots into a later
    second that the pacer never granted them.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.granted = threading.local()

    def acquire(self, *, max_wait: float | None = None) -> float:
        self.granted.start = super().acquire(max_wait=max_wait)
        return self.granted.start


class RecordingConnection:
    def __init__(self, clock: VirtualClock, log: list[float], pacer: GrantRecordingPacer | None = None) -> None:
        self.clock, self.log, self.pacer = clock, log, pacer

    def open(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def send_messages(self, messages) -> int:
        at = self.pacer.granted.start if self.pacer else self.clock.now
        self.log.extend(at for _ in messages)
        return len(messages)


def test_200_messages_at_20_per_second_take_about_ten_seconds_over_four_connections():
    clock, sends, connections = VirtualClock(), [], []

    def connect():
        connection = RecordingConnection(clock, sends, pacer)
        connections.append(connection)
        return connection

    pacer = GrantRecordingPacer("test-send", 20, cache=LocMemCache("pace", {}), clock=clock.time, sleep=clock.sleep)
    start = clock.now
    with Sender(pacer=pacer, concurrency=4, connection_factory=connect) as sender:
        futures = [sender.submit(EmailMessage("s", "b", to=[f"r{i}@example.com"])) for i in range(200)]
        outcomes = [f.result() for f in futures]

    elapsed = clock.now - start
    assert all(o.status == SENT for o in outcomes)
    assert len(sends) == 200
    assert elapsed >= 9.5, f"200 messages at 20/s went out in {elapsed:.2f}s of simulated time"
    assert elapsed <= 200 / (20 * 0.95), f"{elapsed:.2f}s is slower than 95% of the allowed rate"
    assert len(connections) > 1, "sends should go out over several connections"
    ordered = sorted(sends)
    worst_second = max(sum(1 for t in ordered if s <= t < s + 1.0) for s in ordered)
    assert worst_second <= 20


def test_pacing_is_shared_by_two_senders_through_the_cache():
    clock, sends = VirtualClock(), []
    cache = LocMemCache("pace-shared", {})
    senders = [
        Sender(
            pacer=Pacer("shared", 10, cache=cache, clock=clock.time, sleep=clock.sleep),
            concurrency=2,
            connection_factory=lambda: RecordingConnection(clock, sends),
        )
        for _ in range(2)
    ]
    start = clock.now
    futures = [s.submit(EmailMessage("s", "b", to=["x@example.com"])) for _ in range(50) for s in senders]
    [f.result() for f in futures]
    for sender in senders:
        sender.close()
    # 100 messages at 10/s between them: about 10 s, not the 5 s two unshared limits would allow.
    assert clock.now - start >= 9.5


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        ("TooManyRequestsException", "Maximum sending rate exceeded.", "throttled"),
        ("Throttling", "Maximum sending rate exceeded.", "throttled"),
        ("LimitExceededException", "Daily message quota exceeded.", "account"),
        ("Throttling", "Daily message quota exceeded.", "account"),
        ("SendingPausedException", "Sending is paused for this account.", "account"),
        ("AccountSuspendedException", "Account suspended.", "account"),
        ("MessageRejected", "Email address is not verified.", "rejected"),
        ("InternalFailure", "Something went wrong.", "transient"),
    ],
)
def test_ses_answers_are_classified_by_their_error_code(code, message, kind):
    refusal = refusal_of(ses_error(code, message))
    assert refusal.kind == kind
    assert code in refusal.reason


def test_a_throttled_message_backs_off_and_is_sent():
    ScriptedSESBackend.reset({"a@example.com": [("TooManyRequestsException", "Maximum sending rate exceeded.")] * 2})
    clock = VirtualClock()
    with Sender(rate=0, concurrency=1, connection_factory=ScriptedSESBackend, sleep=clock.sleep) as sender:
        outcome = sender.send(EmailMessage("s", "b", to=["a@example.com"]))
    assert outcome.status == SENT
    assert clock.now - 1_000.0 == pytest.approx(1.0 + 2.0)  # backed off twice, doubling
    assert [m.to for m in ScriptedSESBackend.sent] == [["a@example.com"]]


def test_throttling_that_never_ends_fails_the_message_retryably():
    ScriptedSESBackend.reset({"a@example.com": [("Throttling", "Maximum sending rate exceeded.")] * 10})
    with Sender(
        rate=0, concurrency=1, max_throttle_retries=2, connection_factory=ScriptedSESBackend, sleep=lambda s: None
    ) as sender:
        outcome = sender.send(EmailMessage("s", "b", to=["a@example.com"]))
    assert outcome.status == FAILED and "Throttling" in outcome.error


def test_after_an_account_stop_nothing_more_is_handed_over():
    ScriptedSESBackend.reset({"b@example.com": [("SendingPausedException", "Sending is paused for this account.")]})
    with Sender(rate=0, concurrency=1, connection_factory=ScriptedSESBackend) as sender:
        outcomes = [sender.send(EmailMessage("s", "b", to=[f"{x}@example.com"])) for x in "abcd"]
    assert [o.status for o in outcomes] == [SENT, NOT_SENT, NOT_SENT, NOT_SENT]
    assert "SendingPausedException" in sender.stopped
    assert [m.to[0] for m in ScriptedSESBackend.sent] == ["a@example.com"]


def test_a_rejected_recipient_is_not_retried():
    ScriptedSESBackend.reset({"a@example.com": [("MessageRejected", "Address blacklisted.")]})
    with Sender(rate=0, concurrency=1, connection_factory=ScriptedSESBackend) as sender:
        outcome = sender.send(EmailMessage("s", "b", to=["a@example.com"]))
    assert outcome.status == REJECTED and "Address blacklisted" in outcome.error


# -- through run_daily -------------------------------------------------------------------------------------


@pytest.fixture
def readers(db, settings) -> list[Subscriber]:
    settings.EMAIL_BACKEND = BACKEND
    settings.DELIVERY_BATCH_SIZE = 2
    settings.SES_SEND_CONCURRENCY = 1
    ScriptedSESBackend.reset()
    return [
        subscriber_create(email=address, symbols=["AAPL", "MSFT"], status=Subscriber.Status.ACTIVE)
        for address in ADDRESSES
    ]


def deliveries(day) -> dict[str, Delivery]:
    return {d.subscriber.email: d for d in Delivery.objects.filter(issue__date=day).select_related("subscriber")}


def sent_to() -> list[str]:
    return [m.to[0] for m in ScriptedSESBackend.sent]


@pytest.mark.django_db
def test_a_rejected_recipient_fails_with_the_reason_and_the_run_goes_on(readers, trading_day):
    ScriptedSESBackend.script[ADDRESSES[1]] = [("MessageRejected", "Email address is on the account suppression list.")]
    call_command("run_daily", "--date", trading_day.isoformat())

    assert sorted(sent_to()) == sorted(set(ADDRESSES) - {ADDRESSES[1]})
    rejected = deliveries(trading_day)[ADDRESSES[1]]
    assert rejected.status == Delivery.Status.FAILED and not rejected.retryable
    assert "suppression list" in rejected.error
    assert DailyRun.objects.get(date=trading_day).status == DailyRun.Status.PARTIAL

    call_command("run_daily", "--date", trading_day.isoformat())
    assert len(sent_to()) == 4, "a rejected recipient is not tried again"


@pytest.mark.django_db
def test_a_transient_failure_is_sent_by_the_rerun(readers, trading_day):
    ScriptedSESBackend.script[ADDRESSES[2]] = [("InternalFailure", "An internal error occurred.")]
    call_command("run_daily", "--date", trading_day.isoformat())
    assert deliveries(trading_day)[ADDRESSES[2]].status == Delivery.Status.FAILED
    assert deliveries(trading_day)[ADDRESSES[2]].retryable

    call_command("run_daily", "--date", trading_day.isoformat())
    assert sorted(sent_to()) == sorted(ADDRESSES), "each reader exactly once"
    assert {d.status for d in deliveries(trading_day).values()} == {Delivery.Status.SENT}


@pytest.mark.django_db
def test_an_account_stop_ends_the_run_with_one_line_and_leaves_the_rest_pending(readers, trading_day):
    ScriptedSESBackend.script[ADDRESSES[2]] = [("SendingPausedException", "Sending is paused for this account.")]
    with pytest.raises(CommandError) as stopped:
        call_command("run_daily", "--date", trading_day.isoformat())

    message = str(stopped.value)
    assert "\n" not in message
    assert "sending stopped" in message and "SendingPausedException" in message and "3 emails left pending" in message
    assert sent_to() == ADDRESSES[:2]
    statuses = {email: d.status for email, d in deliveries(trading_day).items()}
    assert [statuses[a] for a in ADDRESSES] == ["sent", "sent", "pending", "pending", "pending"]
    assert DailyRun.objects.filter(date=trading_day).latest("started_at").status == DailyRun.Status.FAILED

    # Sending resumed: the rerun sends the three that were left, and only them.
    call_command("run_daily", "--date", trading_day.isoformat())
    assert sent_to() == ADDRESSES


@pytest.mark.django_db
def test_the_archive_is_written_before_the_message_is_handed_over(readers, trading_day, archive_dir):
    for address in ADDRESSES:
        ScriptedSESBackend.script[address] = [("InternalFailure", "An internal error occurred.")]
    call_command("run_daily", "--date", trading_day.isoformat())

    assert sent_to() == []
    for delivery in deliveries(trading_day).values():
        assert delivery.status == Delivery.Status.FAILED
        assert delivery.sent_at is None and delivery.message_id == ""
        assert (archive_dir / delivery.archive_key).exists()
        assert (archive_dir / delivery.archive_key).with_suffix(".eml").read_bytes().startswith(b"Content-Type")


@pytest.mark.django_db
def test_a_subscriber_suppressed_after_planning_is_never_sent_to(readers, trading_day):
    call_command("run_daily", "--date", trading_day.isoformat(), "--limit", "0")
    assert len(deliveries(trading_day)) == 5
    subscriber_set_status(subscriber=readers[0], status=Subscriber.Status.BOUNCED)
    subscriber_set_status(subscriber=readers[1], status=Subscriber.Status.COMPLAINED)

    call_command("run_daily", "--date", trading_day.isoformat())
    assert sorted(sent_to()) == sorted(ADDRESSES[2:])
    assert deliveries(trading_day)[ADDRESSES[0]].status == Delivery.Status.SKIPPED
    assert "bounced" in deliveries(trading_day)[ADDRESSES[0]].error


@pytest.mark.django_db
def test_in_flight_deliveries_of_a_stopped_run_are_listed_not_resent_until_asked(readers, trading_day, capsys):
    call_command("run_daily", "--date", trading_day.isoformat(), "--limit", "0")
    Delivery.objects.filter(subscriber__email=ADDRESSES[3]).update(status=Delivery.Status.SENDING)

    call_command("run_daily", "--date", trading_day.isoformat())
    out = capsys.readouterr().out
    assert ADDRESSES[3] not in sent_to()
    in_flight = deliveries(trading_day)[ADDRESSES[3]]
    assert "1 were in flight and were not sent again (--resend-ambiguous)" in out
    assert str(in_flight.token) in out and ADDRESSES[3] not in out, "listed by its opaque token, not its address"
    assert str(in_flight.token) in DailyRun.objects.latest("started_at").errors["delivery_ambiguous"]["tokens"]
    assert "every subscriber already has" not in out
    assert in_flight.status == Delivery.Status.SENDING

    call_command("run_daily", "--date", trading_day.isoformat(), "--resend-ambiguous")
    assert sorted(sent_to()) == sorted(ADDRESSES)
    assert deliveries(trading_day)[ADDRESSES[3]].status == Delivery.Status.SENT


def test_missing_aws_credentials_stop_sending_at_once():
    from anymail.exceptions import AnymailAPIError
    from botocore.exceptions import NoCredentialsError

    class NoCredentials(ScriptedSESBackend):
        def send_messages(self, messages):
            try:
                raise NoCredentialsError()
            except NoCredentialsError as cause:
                raise AnymailAPIError("Unable to locate credentials") from cause

    ScriptedSESBackend.reset()
    with Sender(rate=0, concurrency=1, connection_factory=NoCredentials) as sender:
        outcomes = [sender.send(EmailMessage("s", "b", to=[f"{x}@example.com"])) for x in "ab"]
    assert [o.status for o in outcomes] == [NOT_SENT, NOT_SENT]
    assert "no AWS credentials" in sender.stopped


def test_an_unreachable_pacing_cache_stops_sending_rather_than_sending_unpaced():
    class DownCache(LocMemCache):
        def add(self, *args, **kwargs):
            raise ConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    pacer = Pacer("down", 10, cache=DownCache("down", {}))
    with Sender(pacer=pacer, concurrency=2, connection_factory=ScriptedSESBackend) as sender:
        outcome = sender.send(EmailMessage("s", "b", to=["a@example.com"]))
    assert outcome.status == NOT_SENT
    assert "cannot pace sending" in sender.stopped and "Connection refused" in sender.stopped


def test_a_connection_that_cannot_open_fails_the_message_retryably():
    def broken():
        raise OSError("Network is unreachable")

    with Sender(rate=0, concurrency=1, connection_factory=broken) as sender:
        outcome = sender.send(EmailMessage("s", "b", to=["a@example.com"]))
    assert outcome.status == FAILED and "Network is unreachable" in outcome.error


@pytest.mark.django_db
def test_queries_grow_with_batches_not_with_subscribers(settings, trading_day):
    """No query per subscriber: 4 times the subscribers in 4 times the batches costs a few queries per batch.

    A batch costs its claim (select, update, in a savepoint here) and its tickers; each window of ``concurrency`` messages one statement
    (the last window's outcomes and this one's hand-over)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from newsletters.delivery import deliveries_plan, deliveries_send, issue_ensure
    from newsletters.services import issue_content_for

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SES_SEND_CONCURRENCY = 5  # two windows a batch

    def queries_to_send(n: int, day) -> int:
        for i in range(n):
            subscriber_create(email=f"q{day.day}-{i}@example.com", symbols=["AAPL", "KO"], status="active")
        content = issue_content_for(day=day, symbols=["AAPL", "KO"], refresh=True)
        issue = issue_ensure(day=day, demo=True)
        with CaptureQueriesContext(connection) as captured:
            deliveries_plan(issue=issue)
            stage = deliveries_send(issue=issue, content=content, batch_size=10)
        assert stage.sent == Delivery.objects.filter(issue=issue, status="sent").count() > 0
        Subscriber.objects.filter(email__startswith=f"q{day.day}-").update(status="paused")
        return len(captured)

    small = queries_to_send(10, trading_day)
    large = queries_to_send(40, trading_day.replace(day=19))
    assert large - small <= 3 * (4 + 1 + 2), f"{small} queries for 10 subscribers, {large} for 40"
