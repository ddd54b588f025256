"""The public archive shows the day's market view, an index and an Atom feed, and never a subscriber."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.core.management import call_command
from django.urls import reverse

from newsletters.models import Delivery
from subscriptions.models import Subscriber

pytestmark = pytest.mark.django_db

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def archived(outbox):
    call_command("seed_demo")
    call_command("run_daily", "--date", "2026-11-20")
    assert Delivery.objects.filter(status=Delivery.Status.SENT).exists()
    return "2026-11-20"


def _private_strings() -> list[str]:
    values = list(Subscriber.objects.values_list("email", flat=True))
    values += [t for t in Delivery.objects.values_list("token", flat=True) if t]
    assert values
    return [str(v) for v in values]


def test_day_index_and_feed_show_the_session_but_no_subscriber(client, archived):
    day = client.get(reverse("newsletters:archive-day", kwargs={"date": archived}))
    index = client.get(reverse("newsletters:archive"))
    feed = client.get(reverse("newsletters:archive-feed"))
    assert day.status_code == index.status_code == feed.status_code == 200
    day_html = day.content.decode()
    assert "DEMO DATA" in day_html
    assert "NVDA" in day_html
    assert "public" in day["Cache-Control"] and "max-age" in day["Cache-Control"]
    assert f"/archive/{archived}/" in index.content.decode()
    for body in (day_html, index.content.decode(), feed.content.decode()):
        for private in _private_strings():
            assert private not in body
    root = ET.fromstring(feed.content)
    assert root.tag == f"{ATOM}feed"
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 1
    assert archived in entries[0].find(f"{ATOM}link").get("href")


def test_follower_counts_under_three_are_not_shown(client, archived):
    html = client.get(reverse("newsletters:archive-day", kwargs={"date": archived})).content.decode()
    assert ">1<" not in html and ">2<" not in html


@pytest.mark.parametrize("date", ["2026-11-19", "2026-13-40", "yesterday"])
def test_unknown_or_bad_dates_are_404(client, archived, date):
    assert client.get(f"/archive/{date}/").status_code == 404


def test_an_issue_without_sent_deliveries_is_not_archived(client):
    from newsletters.models import Issue

    Issue.objects.create(date="2026-11-18", demo=True)
    assert client.get("/archive/2026-11-18/").status_code == 404
    assert "2026-11-18" not in client.get("/archive/").content.decode()


def test_the_subscribe_page_links_the_archive(client):
    assert reverse("newsletters:archive") in client.get(reverse("subscriptions:subscribe")).content.decode()
