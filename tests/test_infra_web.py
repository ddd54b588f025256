"""Health checks, security headers, the admin's configurable path, login lockout and staff pages uncached."""

from __future__ import annotations

import importlib

import pytest
from django.contrib.auth.models import User
from django.test import RequestFactory
from django.urls import clear_url_caches, reverse

from walter_site import health
from walter_site.security import client_ip


def test_healthz_answers_without_auth_or_a_known_host(client):
    response = client.get("/healthz", HTTP_HOST="10.0.3.17:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_cache(client):
    response = client.get("/readyz", HTTP_HOST="10.0.3.17")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok"}}


@pytest.mark.django_db
def test_readyz_is_503_when_a_dependency_fails_and_leaks_no_detail(client, monkeypatch):
    def broken_database():
        raise RuntimeError("connection to postgres://walter:hunter2@db.internal failed")

    monkeypatch.setitem(health.CHECKS, "database", broken_database)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "unavailable", "cache": "ok"}}
    assert b"hunter2" not in response.content


def test_health_paths_are_exempt_from_the_https_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/email/whatever/").status_code == 301


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/admin/login/", "/unsubscribe/bad-token/"])
def test_every_page_has_a_content_security_policy(client, path):
    policy = client.get(path)["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "object-src 'none'" in policy


@pytest.fixture
def admin_at(settings):
    """Reload the URLconf with ADMIN_URL changed, and put it back afterwards."""

    def move(path: str) -> None:
        settings.ADMIN_URL = path
        import walter_site.urls

        importlib.reload(walter_site.urls)
        clear_url_caches()

    yield move
    move("admin/")


@pytest.mark.django_db
def test_the_admin_lives_at_the_configured_path(client, admin_at):
    admin_at("ops-7f3a/")
    assert reverse("admin:index") == "/ops-7f3a/"
    assert client.get("/ops-7f3a/login/").status_code == 200
    assert client.get("/admin/login/").status_code == 404


@pytest.mark.django_db
def test_admin_logins_are_locked_out_after_repeated_failures(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_superuser("ops", "ops@example.com", "right-password-123")
    for _ in range(3):
        response = client.post("/admin/login/", {"username": "ops", "password": "wrong"})
    assert response.status_code == 429
    # Locked out: even the right password is refused now.
    response = client.post("/admin/login/?next=/admin/", {"username": "ops", "password": "right-password-123"})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_successful_login_still_works(client):
    User.objects.create_superuser("ops", "ops@example.com", "right-password-123")
    client.post("/admin/login/", {"username": "ops", "password": "wrong"})
    response = client.post("/admin/login/?next=/admin/", {"username": "ops", "password": "right-password-123"})
    assert response.status_code == 302
    assert client.login(username="ops", password="right-password-123")  # no request: not a web login


@pytest.mark.django_db
def test_staff_pages_are_private_and_never_stored(admin_client):
    for path in ["/admin/", "/admin/newsletters/dailyrun/"]:
        cache_control = admin_client.get(path)["Cache-Control"]
        assert "private" in cache_control and "no-store" in cache_control
        assert "public" not in cache_control


@pytest.mark.django_db
def test_public_pages_keep_their_cache_policy(client):
    response = client.get("/healthz")
    assert "private" not in response.get("Cache-Control", "")


def test_client_ip_trusts_only_what_the_load_balancer_appended(settings):
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9", REMOTE_ADDR="10.0.1.5")
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "203.0.113.9"  # the client sent 6.6.6.6 itself; it is not trusted
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.1.5"
