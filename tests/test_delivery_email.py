"""The email itself: size, charts, labels, the text twin, and "view in browser" of the archived copy."""

from __future__ import annotations

import dataclasses
import email
import io
import re
from email import policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from PIL import Image

import newsletters.charts
from markets.providers.demo import DEMO_UNIVERSE
from markets.selectors import ticker_snapshots
from newsletters.compose import PersonalLinks, email_compose, issue_content_build
from newsletters.links import view_url
from newsletters.models import Analysis, Delivery
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create

pytestmark = pytest.mark.django_db

TWENTY = sorted(DEMO_UNIVERSE)[:20]
LINKS = PersonalLinks(view="https://w.example/v", preferences="https://w.example/p", unsubscribe="https://w.example/u")


def read(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=policy.default)


def only_message(outbox: Path) -> email.message.EmailMessage:
    (path,) = outbox.glob("*.eml")
    return read(path)


def test_twenty_tickers_fit_in_100_kb_of_html_with_a_small_png_chart_each(outbox, trading_day):
    subscriber_create(email="many@example.com", symbols=TWENTY, status=Subscriber.Status.ACTIVE)
    call_command("run_daily", "--date", trading_day.isoformat())

    message = only_message(outbox)
    html = message.get_body(("html",)).get_content()
    assert len(html.encode()) < 100_000
    assert "<style" not in html, "CSS is inlined: many mail clients drop <style>"
    charts = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert len(charts) == 20
    for part in charts:
        data = part.get_payload(decode=True)
        assert len(data) < 20_000
        assert Image.open(io.BytesIO(data)).size == (600, 160)
        assert f'src="cid:{part["Content-ID"].strip("<>")}"' in html


def test_each_chart_is_rendered_once_per_issue_however_many_readers_show_it(outbox, trading_day, monkeypatch):
    for i in range(4):
        subscriber_create(email=f"r{i}@example.com", symbols=["AAPL", "MSFT"], status=Subscriber.Status.ACTIVE)
    rendered = []
    real = newsletters.charts.chart_png
    monkeypatch.setattr(newsletters.charts, "chart_png", lambda s: rendered.append(s.symbol) or real(s))
    call_command("run_daily", "--date", trading_day.isoformat())

    assert sorted(rendered) == ["AAPL", "MSFT"]
    first, *others = [read(p) for p in sorted(outbox.glob("*.eml"))]
    assert len(others) == 3

    def images(m):
        return sorted(p.get_payload(decode=True) for p in m.walk() if p.get_content_type() == "image/png")

    assert all(images(m) == images(first) for m in others)


@pytest.fixture
def snapshots(trading_day):
    subscriber_create(email="x@example.com", symbols=["AAPL", "MSFT", "NVDA", "KO"], status=Subscriber.Status.ACTIVE)
    call_command("run_daily", "--date", trading_day.isoformat(), "--stage", "data")
    return ticker_snapshots(["AAPL", "MSFT", "NVDA", "KO"], trading_day, demo=True)


def analysis(symbol: str, day, **extra) -> Analysis:
    values = dict(
        date=day,
        model="m",
        prompt_version="v1",
        headline=f"{symbol} headline",
        summary=f"{symbol} summary.",
        stance="neutral",
        score=50,
    )
    return Analysis(**{**values, **extra})


def test_direction_reads_without_colour_and_every_label_shows(snapshots, trading_day):
    up = dataclasses.replace(snapshots["AAPL"], change_pct=1.25)
    down = dataclasses.replace(snapshots["MSFT"], change_pct=-2.5)
    stale = dataclasses.replace(snapshots["NVDA"], as_of=snapshots["NVDA"].chart_dates[-2])
    flagged = dataclasses.replace(snapshots["KO"], flagged="the close moved 40% in a day")
    content = issue_content_build(
        day=trading_day,
        snapshots={"AAPL": up, "MSFT": down, "NVDA": stale, "KO": flagged},
        analyses={
            "AAPL": analysis("AAPL", trading_day),
            "MSFT": analysis("MSFT", trading_day, automated=True, fallback_reason="reply failed validation"),
        },
    )
    composed = email_compose(
        content=content, symbols=["AAPL", "KO", "MSFT", "NVDA"], email="x@example.com", links=LINKS
    )

    for body in (composed.html, composed.text):
        assert "1.25%" in body and "2.50%" in body
        assert "DEMO DATA" in body
        assert "No new data for Friday, November 20" in body
        assert "the close moved 40% in a day" in body
        assert "the AI model's answer could not be used today" in body
    assert re.search(r"▲\s*1\.25%", composed.html) and re.search(r"▼\s*2\.50%", composed.html)
    assert "▲ 1.25%" in composed.text and "▼ 2.50%" in composed.text
    assert composed.text.count("automated analysis") == 1, "only MSFT fell back"


def test_footer_has_the_address_the_disclaimer_and_the_three_links(snapshots, trading_day, settings):
    settings.NEWSLETTER_POSTAL_ADDRESS = "Walter Ltd, 12 Harbour Road, Boston MA"
    content = issue_content_build(day=trading_day, snapshots=snapshots, analyses={})
    composed = email_compose(content=content, symbols=["AAPL"], email="x@example.com", links=LINKS)
    for body in (composed.html, composed.text):
        assert "Walter Ltd, 12 Harbour Road, Boston MA" in body
        assert "Not investment advice" in body
        for url in (LINKS.view, LINKS.preferences, LINKS.unsubscribe):
            assert url in body


def test_view_in_browser_serves_the_archived_copy_with_its_charts(client, outbox, trading_day, archive_dir):
    subscriber_create(email="ann@example.com", symbols=["AAPL", "MSFT"], status=Subscriber.Status.ACTIVE)
    call_command("run_daily", "--date", trading_day.isoformat())
    delivery = Delivery.objects.get()
    message = only_message(outbox)

    # The archived copy is what is served, not a re-render: change it and the page changes.
    archived = archive_dir / delivery.archive_key
    archived.write_text(archived.read_text().replace("Not investment advice", "Archived copy, not advice"))
    page = client.get(urlsplit(view_url(str(delivery.token))).path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Archived copy, not advice" in html

    sources = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(sources) == 2 and all(not s.startswith("cid:") for s in sources)
    parts = {p["Content-ID"].strip("<>"): p.get_payload(decode=True) for p in message.walk() if p["Content-ID"]}
    for source in sources:
        image = client.get(source)
        assert image.status_code == 200 and image["Content-Type"] == "image/png"
        assert image.content in parts.values()


@pytest.mark.parametrize("token", ["not-a-token", "Zm9v:1abc:tampered"])
def test_view_in_browser_refuses_a_bad_link(client, token):
    assert client.get(f"/email/{token}/").status_code == 404
    assert client.get(f"/email/{token}/images/chart-aapl@walter").status_code == 404


def test_the_demo_report_points_at_a_working_view_in_browser_link(client, outbox, trading_day, capsys):
    call_command("seed_demo", "--quiet")
    call_command("run_daily", "--date", trading_day.isoformat())
    capsys.readouterr()
    call_command("demo_report")
    out = capsys.readouterr().out
    link = re.search(r"http://localhost:8000(/email/[^\s]+)", out).group(1)
    page = client.get(link)
    assert page.status_code == 200 and "DEMO DATA" in page.content.decode()
