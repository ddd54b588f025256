"""The archive overwrites a rerun's copy in place, through the storage's own setting."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage

from newsletters.archive import archive_read_html, archive_write


def test_a_second_write_replaces_the_first(archive_dir, trading_day):
    key = archive_write(day=trading_day, token="t-1", html="<p>first</p>", mime=b"first")
    again = archive_write(day=trading_day, token="t-1", html="<p>second</p>", mime=b"second")
    assert again == key and archive_read_html(key) == "<p>second</p>"
    assert sorted(p.name for p in (archive_dir / key).parent.iterdir()) == ["t-1.eml", "t-1.html"]


def test_a_storage_that_renames_instead_of_overwriting_is_refused(tmp_path, trading_day):
    storage = FileSystemStorage(location=str(tmp_path))  # allow_overwrite is off by default
    archive_write(day=trading_day, token="t-2", html="<p>first</p>", mime=b"first", storage=storage)
    with pytest.raises(ImproperlyConfigured, match="overwrit"):
        archive_write(day=trading_day, token="t-2", html="<p>second</p>", mime=b"second", storage=storage)
    assert len(list((tmp_path / "emails").rglob("*"))) == 2 + 3  # the two files and their three folders


@pytest.mark.django_db
def test_an_archived_copy_opens_from_its_folder_with_its_charts(trading_day, archive_dir, outbox):
    import email
    import re
    from email import policy

    from django.core.management import call_command

    from newsletters.models import Delivery
    from subscriptions.models import Subscriber
    from subscriptions.services import subscriber_create

    for address in ("ann@example.com", "bob@example.com"):
        subscriber_create(email=address, symbols=["AAPL", "MSFT"], status=Subscriber.Status.ACTIVE)
    call_command("run_daily", "--date", trading_day.isoformat())
    for delivery in Delivery.objects.all():
        html_path = archive_dir / delivery.archive_key
        html = html_path.read_text()
        charts = re.findall(r'src="([^"]+)"', html)
        assert charts and "cid:" not in html
        sent = email.message_from_bytes(html_path.with_suffix(".eml").read_bytes(), policy=policy.default)
        inline = {
            p["Content-ID"].strip("<>"): p.get_content() for p in sent.walk() if p.get_content_maintype() == "image"
        }
        for src in charts:
            on_disk = (html_path.parent / src).read_bytes()  # what a browser opening the file loads
            assert on_disk == inline[src.removeprefix("charts/").removesuffix(".png")], "the chart that was sent"
    # One file per chart for the whole issue, not one per email.
    assert len(list((archive_dir / "emails/2026/11/20/charts").iterdir())) == 2
