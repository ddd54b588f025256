"""Erasure means gone, whoever starts it: nothing of the address stays in deliveries, the archive or the admin's
own history."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from newsletters.models import Delivery
from subscriptions.models import Subscriber
from subscriptions.services import subscriber_create, subscriber_erase

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_cache")]

ADDRESS = "ada@example.com"


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("staff", "staff@walter.example", "not-used")
    client.force_login(user)
    return client


@pytest.fixture
def sent(trading_day, archive_dir) -> Delivery:
    subscriber_create(email=ADDRESS, symbols=["AAPL"], status=Subscriber.Status.ACTIVE)
    call_command("run_daily", "--date", trading_day.isoformat())
    delivery = Delivery.objects.select_related("subscriber").get(status=Delivery.Status.SENT)
    assert (archive_dir / delivery.archive_key).exists()
    return delivery


def traces(delivery: Delivery, archive_dir) -> list[str]:
    delivery.refresh_from_db()
    found = []
    if delivery.email or delivery.subscriber_id or delivery.archive_key:
        found.append("delivery row")
    if list(archive_dir.rglob(f"{delivery.token}.*")):
        found.append("archived email")
    if LogEntry.objects.filter(object_repr__icontains=ADDRESS).exists():
        found.append("admin history")
    if Subscriber.objects.filter(email=ADDRESS).exists():
        found.append("subscriber row")
    return found


def test_deleting_a_subscriber_in_the_admin_erases_like_the_subscriber_would(
    staff, sent, archive_dir, django_capture_on_commit_callbacks
):
    subscriber_id = sent.subscriber_id
    url = reverse("admin:subscriptions_subscriber_delete", args=[subscriber_id])
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert traces(sent, archive_dir) == []
    (entry,) = LogEntry.objects.filter(object_id=str(subscriber_id))
    assert entry.is_deletion() and entry.object_repr == f"Subscriber #{subscriber_id} (erased)"


def test_the_delete_selected_action_erases_too(staff, sent, archive_dir, django_capture_on_commit_callbacks):
    url = reverse("admin:subscriptions_subscriber_changelist")
    data = {"action": "delete_selected", "_selected_action": [sent.subscriber_id], "post": "yes"}
    with django_capture_on_commit_callbacks(execute=True):
        assert staff.post(url, data).status_code == 302
    assert traces(sent, archive_dir) == []


def test_an_erased_subscriber_edited_by_staff_before_leaves_no_address_in_the_admin_history(
    staff, sent, archive_dir, django_capture_on_commit_callbacks
):
    subscriber = sent.subscriber
    url = reverse("admin:subscriptions_subscriber_change", args=[subscriber.pk])
    data = {"email": ADDRESS, "status": Subscriber.Status.PAUSED, "tickers": [t.pk for t in subscriber.tickers.all()]}
    data["soft_bounces"] = 0
    assert staff.post(url, data).status_code == 302
    assert LogEntry.objects.filter(object_repr=ADDRESS).exists(), "the admin named the subscriber by address"

    with django_capture_on_commit_callbacks(execute=True):
        subscriber_erase(subscriber=subscriber)
    assert traces(sent, archive_dir) == []


def test_an_archive_that_cannot_be_deleted_undoes_the_erase_whole_and_a_retry_finishes_it(
    client, sent, archive_dir, monkeypatch
):
    from django.core.files.storage import FileSystemStorage

    from subscriptions import tokens

    real_delete = FileSystemStorage.delete

    def storage_down(self, name):
        raise OSError("the archive bucket is unreachable")

    monkeypatch.setattr(FileSystemStorage, "delete", storage_down)
    link = f"/my-data/delete/{tokens.make_token(tokens.DELETE, sent.subscriber_id)}/"
    failed = client.post(link, {"confirm_delete": "yes"})
    assert failed.status_code == 503 and "nothing was deleted" in failed.content.decode()
    # Nothing half done: the row still points at its copy, so the retry can find and delete it.
    assert set(traces(sent, archive_dir)) == {"delivery row", "archived email", "subscriber row"}

    monkeypatch.setattr(FileSystemStorage, "delete", real_delete)
    assert client.post(link, {"confirm_delete": "yes"}).status_code == 200
    assert traces(sent, archive_dir) == []
