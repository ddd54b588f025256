"""Hardening that settings alone cannot express: the login lockout backend, the client address behind the load
balancer, and pages for staff kept out of shared caches."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control


class LoginLockoutBackend(AxesStandaloneBackend):
    """django-axes' lockout for logins over HTTP.

    An authentication without a request (a management command, a script, the test client's ``login``) has no
    client address to lock out; django-axes would refuse it outright, so it passes here to the next backend.
    """

    def authenticate(self, request: HttpRequest | None, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The visitor's address: the entry the last trusted proxy appended to X-Forwarded-For, else REMOTE_ADDR.

    Only entries added by our own proxies can be trusted; anything to their left was sent by the client.
    """
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies > 0 and len(forwarded) >= proxies and _is_address(forwarded[-proxies]):
        return forwarded[-proxies]
    # What is not an address (a forged header, a test client's oddity) is no one's: the database would refuse it.
    remote = request.META.get("REMOTE_ADDR")
    return remote if _is_address(remote) else None


def _is_address(value: object) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def login_username(request: HttpRequest, credentials: dict | None) -> str | None:
    """The username django-axes records for a login attempt, cut to the longest a user can have.

    Django's login form does not enforce the username's length before authenticating, and the attempts table holds
    255 characters: PostgreSQL refused a longer one, so the login page answered 500. A longer name is never a user's.
    """
    field = settings.AXES_USERNAME_FORM_FIELD
    username = credentials.get(field) if credentials else getattr(request, "data", request.POST).get(field)
    if not isinstance(username, str):
        return username
    user_model = get_user_model()
    return username[: user_model._meta.get_field(user_model.USERNAME_FIELD).max_length or 150]


class StaffNoStoreMiddleware:
    """Pages for staff (the admin, staff previews, anything a signed-in staff member sees) are never stored by a
    shared cache or the browser: ``Cache-Control: private, no-store``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.prefixes = ("/" + settings.ADMIN_URL, "/staff/")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if request.path_info.startswith(self.prefixes) or (user is not None and user.is_staff):
            patch_cache_control(response, private=True, no_store=True)
        return response
