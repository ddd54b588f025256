"""Hand messages to the email backend at the account's pace, over several connections, and say what became of each.

Pacing is shared by every process through the cache (:class:`walter_site.ratelimit.Pacer`), so two workers never
exceed ``SES_MAX_SEND_RATE`` together. Each worker thread holds its own backend connection (a boto3 client for
SES). What SES answers decides what happens next:

- throttled → every sender backs off (the pacer's next slot moves) and the message is tried again;
- the recipient or the message refused → that delivery fails with the reason, the others go on;
- the account cannot send (sending paused, suspended, daily quota used up) → nothing more is handed over,
  the messages not yet handed stay pending, and the run stops with one clear line.

A stop request (SIGTERM, a worker shutting down: :mod:`newsletters.stopping`) works the same way without blaming
the account: a message already with the backend finishes; one still waiting for a thread or a pacing slot is not
handed over and comes back "not sent".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from anymail.exceptions import AnymailInvalidAddress, AnymailRecipientsRefused
from botocore.exceptions import NoCredentialsError, PartialCredentialsError
from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from walter_site.ratelimit import Pacer
from walter_site.redaction import redact

from . import stopping

logger = logging.getLogger("walter.sending")

SENT, REJECTED, FAILED, NOT_SENT = "sent", "rejected", "failed", "not sent"

THROTTLED_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException"}
ACCOUNT_CODES = {
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "ConfigurationSetDoesNotExistException",
    "ConfigurationSetSendingPausedException",
    "AccessDeniedException",
    "NotFoundException",
}
REJECTED_CODES = {"MessageRejected", "BadRequestException", "InvalidParameterValue"}


@dataclass(frozen=True)
class Outcome:
    status: str  # sent, rejected (never retried), failed (retryable), not sent (never handed over)
    message_id: str = ""
    error: str = ""


class AccountStopped(Exception):
    """The sending account refuses every message: carry on later, not now."""


@dataclass(frozen=True)
class Refusal:
    kind: str  # throttled, account, rejected, transient
    reason: str


def refusal_of(exc: BaseException) -> Refusal:
    """What an exception from the email backend means; its reason is stored and logged, so it holds no address
    (SES and anymail name the recipient in their error texts)."""
    refusal = _refusal_of(exc)
    return Refusal(refusal.kind, redact(refusal.reason))


def _refusal_of(exc: BaseException) -> Refusal:
    """What an exception from the email backend means, from the AWS error code when there is one."""
    if isinstance(exc, (AnymailInvalidAddress, AnymailRecipientsRefused)):
        return Refusal("rejected", str(exc))
    if _caused_by(exc, (NoCredentialsError, PartialCredentialsError)):
        return Refusal("account", f"no AWS credentials: {exc}")
    code, message = _aws_error(exc)
    reason = f"{code}: {message}" if code else f"{type(exc).__name__}: {exc}"
    if code == "LimitExceededException" or (code in THROTTLED_CODES and "quota" in message.lower()):
        # SES uses one code for "maximum send rate exceeded" (wait) and "daily quota exceeded" (stop).
        kind = "account" if "quota" in message.lower() or "daily" in message.lower() else "throttled"
        return Refusal(kind, reason)
    if code in THROTTLED_CODES:
        return Refusal("throttled", reason)
    if code in ACCOUNT_CODES:
        return Refusal("account", reason)
    if code in REJECTED_CODES:
        return Refusal("rejected", reason)
    return Refusal("transient", reason)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it: anymail wraps botocore's errors, which carry the AWS answer."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _caused_by(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(seen, types) for seen in _chain(exc))


def _aws_error(exc: BaseException) -> tuple[str, str]:
    for seen in _chain(exc):
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and isinstance(response.get("Error"), dict):
            error = response["Error"]
            return str(error.get("Code", "")), str(error.get("Message", ""))
    return "", ""


class Sender:
    """Sends messages on ``concurrency`` threads, each with its own connection, never faster than ``rate``/s."""

    def __init__(
        self,
        *,
        rate: float | None = None,
        concurrency: int | None = None,
        max_throttle_retries: int | None = None,
        backoff: float = 1.0,
        pacer: Pacer | None = None,
        connection_factory: Callable[[], object] = get_connection,
        sleep: Callable[[float], None] = time.sleep,
        stop: stopping.StopFlag | None = None,
    ) -> None:
        rate = settings.SES_MAX_SEND_RATE if rate is None else rate
        self.pacer = pacer or (Pacer("email-send", rate) if rate and rate > 0 else None)
        self.concurrency = max(1, concurrency or settings.SES_SEND_CONCURRENCY)
        self.max_throttle_retries = (
            settings.SES_THROTTLE_RETRIES if max_throttle_retries is None else max_throttle_retries
        )
        self.backoff = backoff
        self.sleep = sleep
        self.connection_factory = connection_factory
        self.stopped: str = ""  # why the account stopped taking messages, once it has
        self.stop = stopping.stop if stop is None else stop  # a stop asked of the process (SIGTERM)
        self._stop = threading.Event()
        self._local = threading.local()
        self._connections: list = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="send")

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def submit(self, message: EmailMessage) -> Future[Outcome]:
        return self._pool.submit(self._send, message)

    def send(self, message: EmailMessage) -> Outcome:
        return self.submit(message).result()

    def close(self, *, wait: bool = True) -> None:
        """Release the threads and connections; ``wait=False`` after a stop leaves a hung send to its timeout."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        if not wait:
            return
        with self._lock:
            for connection in self._connections:
                try:
                    connection.close()
                except Exception:  # closing is best effort: the messages are already accounted for
                    logger.warning("closing an email connection failed", exc_info=True)
            self._connections.clear()

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self.connection_factory()
            connection.open()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _stop_sending(self, reason: str) -> Outcome:
        with self._lock:
            self.stopped = self.stopped or reason
        self._stop.set()
        return Outcome(NOT_SENT, error=f"not sent: {reason}")

    def _halted(self) -> Outcome | None:
        if self._stop.is_set():
            return Outcome(NOT_SENT, error=f"not sent: {self.stopped}")
        if self.stop:
            return Outcome(NOT_SENT, error=f"not sent: stopped ({self.stop.reason})")
        return None

    def _send(self, message: EmailMessage) -> Outcome:
        throttled = 0
        while True:
            halted = self._halted()
            if halted:
                return halted
            if self.pacer:
                try:
                    self.pacer.acquire()
                except Exception as exc:  # the shared cache is down: unpaced sending could exceed the account's rate
                    return self._stop_sending(f"cannot pace sending ({type(exc).__name__}: {exc})")
                halted = self._halted()  # stopped while this one waited for its slot
                if halted:
                    return halted
            try:
                accepted = self._connection().send_messages([message])
            except Exception as exc:
                refusal = refusal_of(exc)
                if refusal.kind == "throttled" and throttled < self.max_throttle_retries:
                    throttled += 1
                    delay = self.backoff * 2 ** (throttled - 1)
                    logger.warning("throttled, retrying in %.1fs: %s", delay, refusal.reason)
                    if self.pacer:
                        self.pacer.defer(delay)
                    else:
                        self.sleep(delay)
                    continue
                if refusal.kind == "account":
                    # The account refused this one too: it was not sent, so it may go out on a later run.
                    return self._stop_sending(refusal.reason)
                if refusal.kind == "rejected":
                    return Outcome(REJECTED, error=refusal.reason)
                return Outcome(FAILED, error=refusal.reason)
            if not accepted:
                return Outcome(FAILED, error="the email backend did not accept the message")
            status = getattr(message, "anymail_status", None)
            return Outcome(SENT, message_id=(status and status.message_id) or "")
