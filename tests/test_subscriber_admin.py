"""The subscriber admin: filters, search, counts per status, and the actions staff use on subscribers."""

from __future__ import annotations

import csv
import email
import io
import re
from email import policy
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from markets.models import Ticker
from subscriptions.models import Subscriber

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]


@pytest.fixture
def url() -> str:
    return reverse("admin:subscriptions_subscriber_changelist")


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "not-used")
    client.force_login(user)
    return client


def make(address: str, status: str, symbols: tuple[str, ...] = (), **fields) -> Subscriber:
    subscriber = Subscriber.objects.create(email=address, status=status, **fields)
    subscriber.tickers.set([Ticker.objects.get_or_create(symbol=s, defaults={"name": s})[0] for s in symbols])
    return subscriber


@pytest.fixture
def people() -> dict[str, Subscriber]:
    now = timezone.now()
    return {
        "ada": make("ada@example.com", Subscriber.Status.ACTIVE, ("AAPL", "MSFT"), confirmed_at=now),
        "bob": make("bob@example.com", Subscriber.Status.PENDING, ("NVDA",)),
        "cy": make("cy@example.com", Subscriber.Status.UNSUBSCRIBED, ("AAPL",), confirmed_at=now),
        "dee": make("dee@example.com", Subscriber.Status.BOUNCED, ("MSFT",), confirmed_at=now, soft_bounces=3),
        "eve": make("eve@example.com", Subscriber.Status.COMPLAINED, ()),
        "fay": make("fay@example.com", Subscriber.Status.PENDING, ("AAPL",)),
    }


def listed(response) -> list[str]:
    """The addresses in the changelist's result rows."""
    return sorted(re.findall(r'<th class="field-email"><a [^>]*>([^<]+)</a>', response.content.decode()))


def act(client, url: str, action: str, *subscribers: Subscriber):
    return client.post(
        url, {"action": action, "_selected_action": [s.pk for s in subscribers], "index": 0}, follow=False
    )


def outbox_messages(outbox: Path) -> list[email.message.EmailMessage]:
    if not outbox.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


def test_only_staff_see_the_subscriber_list(client, url, people):
    response = client.get(url)
    assert response.status_code == 302 and "login" in response["Location"]


def test_filter_by_status_and_by_ticker(staff, url, people):
    assert len(listed(staff.get(url))) == 6
    assert listed(staff.get(url, {"status__exact": "pending"})) == ["bob@example.com", "fay@example.com"]
    aapl = Ticker.objects.get(symbol="AAPL")
    assert listed(staff.get(url, {"tickers__id__exact": aapl.pk})) == [
        "ada@example.com",
        "cy@example.com",
        "fay@example.com",
    ]
    both = staff.get(url, {"tickers__id__exact": aapl.pk, "status__exact": "active"})
    assert listed(both) == ["ada@example.com"]
    # The ticker filter offers only followed tickers.
    Ticker.objects.create(symbol="ZZZ", name="Nobody follows this")
    html = staff.get(url).content.decode()
    assert "NVDA" in html and "ZZZ" not in html


def test_search_by_email(staff, url, people):
    assert listed(staff.get(url, {"q": "ada@"})) == ["ada@example.com"]
    assert listed(staff.get(url, {"q": "example.com"})) == sorted(p.email for p in people.values())
    assert listed(staff.get(url, {"q": "nobody@"})) == []


def test_the_changelist_shows_counts_per_status(staff, url, people):
    html = staff.get(url).content.decode()
    counts = dict(re.findall(r'data-status="(\w+)">(\d+)<', html))
    assert counts == {
        "pending": "2",
        "active": "1",
        "paused": "0",
        "unsubscribed": "1",
        "bounced": "1",
        "complained": "1",
    }
    assert 'href="?status__exact=bounced"' in html
    # The counts are of everyone, whatever the list is filtered to.
    filtered = staff.get(url, {"status__exact": "active"}).content.decode()
    assert dict(re.findall(r'data-status="(\w+)">(\d+)<', filtered))["pending"] == "2"


def test_resend_confirmation_mails_pending_and_unsubscribed_only(
    staff, url, people, outbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = act(staff, url, "resend_confirmation", people["bob"], people["cy"], people["ada"], people["dee"])
    assert response.status_code == 302
    sent = outbox_messages(outbox)
    assert sorted(m["To"] for m in sent) == ["bob@example.com", "cy@example.com"]
    assert all("Confirm" in m["Subject"] and "/confirm/" in m.get_body(("plain",)).get_content() for m in sent)
    # Sending a link confirms nothing by itself.
    assert Subscriber.objects.get(pk=people["bob"].pk).status == Subscriber.Status.PENDING
    notices = [str(m) for m in staff.get(url).context["messages"]]
    assert "Confirmation email sent to 2 subscriber(s)." in notices
    assert any(n.startswith("2 skipped") for n in notices)


def test_suppress_marks_complained_or_bounced_and_stops_sending(staff, url, people):
    act(staff, url, "suppress_complained", people["ada"])
    ada = Subscriber.objects.get(pk=people["ada"].pk)
    assert ada.status == Subscriber.Status.COMPLAINED and ada.is_suppressed
    act(staff, url, "suppress_bounced", people["bob"], people["fay"])
    assert set(Subscriber.objects.filter(status="bounced").values_list("email", flat=True)) == {
        "bob@example.com",
        "dee@example.com",
        "fay@example.com",
    }


def test_unsuppress_restores_bounced_and_complained_but_never_resubscribes(staff, url, people):
    act(staff, url, "unsuppress", people["dee"], people["eve"], people["cy"])
    dee, eve, cy = (Subscriber.objects.get(pk=people[k].pk) for k in ("dee", "eve", "cy"))
    # dee had confirmed: active again, soft bounces forgotten; eve never confirmed: pending.
    assert (dee.status, dee.soft_bounces) == (Subscriber.Status.ACTIVE, 0)
    assert eve.status == Subscriber.Status.PENDING
    # Only the address owner can undo an unsubscribe.
    assert cy.status == Subscriber.Status.UNSUBSCRIBED
    notices = [str(m) for m in staff.get(url).context["messages"]]
    assert "2 subscriber(s) unsuppressed." in notices and "1 skipped: not bounced or complained." in notices


def test_export_csv_has_one_row_per_selected_subscriber(staff, url, people):
    response = act(staff, url, "export_csv", people["ada"], people["bob"], people["eve"])
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="walter-subscribers-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["email", "status", "tickers", "created", "confirmed"]
    by_email = {row[0]: row for row in rows[1:]}
    assert sorted(by_email) == ["ada@example.com", "bob@example.com", "eve@example.com"]
    ada = Subscriber.objects.get(pk=people["ada"].pk)
    assert by_email["ada@example.com"] == [
        "ada@example.com",
        "active",
        "AAPL MSFT",
        ada.created_at.isoformat(),
        ada.confirmed_at.isoformat(),
    ]
    assert by_email["bob@example.com"][1:3] == ["pending", "NVDA"] and by_email["bob@example.com"][4] == ""
    assert by_email["eve@example.com"][2] == ""


def test_export_csv_defuses_spreadsheet_formulas(staff, url):
    risky = make("=cmd@example.com", Subscriber.Status.ACTIVE)
    response = act(staff, url, "export_csv", risky)
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[1][0] == "'=cmd@example.com"
