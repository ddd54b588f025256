"""Pages that every visitor sees alike but for their CSRF token, rendered once per process.

The subscribe page is the site's front door and was its most expensive GET: the template (two levels, URL and
static tags) cost most of its time, several times what the health check costs. Its content depends only on the
deployed code (template, URLs, static file names, constants), so each process renders it once with a placeholder
where the token goes and, per request, joins the two halves around the visitor's own token. The CSRF middleware
still sets or refreshes the visitor's cookie, exactly as with ``{% csrf_token %}``.

The page is rendered without the request, so nothing of one visitor (user, messages, session) can end up in
another's page, and no session is read or written. A page that shows data (a count, a flag) must name it in
``version``: the rendering is kept only while the version, the compiled template and the script prefix are the
same. A changed template (runserver's template reload) or a changed setting (tests) renders it again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template.loader import get_template, render_to_string
from django.urls import get_script_prefix

# Letters and digits only, so escaping leaves it as it is; a real token is 64 characters long, never this one.
CSRF_PLACEHOLDER = "walterCsrfTokenPlaceholder"


class CsrfOnlyPage:
    """One template, the same for every visitor, rendered once per process; only the CSRF token is per request."""

    def __init__(
        self,
        template_name: str,
        context: Callable[[], dict[str, Any]],
        *,
        version: Callable[[], Hashable] = lambda: None,
    ) -> None:
        self.template_name = template_name
        self.context = context
        self.version = version
        self._rendered: tuple[Hashable, str, str] | None = None
        _pages.append(self)

    def response(self, request: HttpRequest) -> HttpResponse:
        head, tail = self._halves()
        return HttpResponse(head + get_token(request) + tail)

    def clear(self) -> None:
        self._rendered = None

    def _halves(self) -> tuple[str, str]:
        # The cached template loader hands out the same compiled template until a template changes.
        key = (get_template(self.template_name).template, get_script_prefix(), self.version())
        rendered = self._rendered
        if rendered is None or rendered[0] != key:
            # Threads of one worker may both render after a change; each result is whole, and the last one stays.
            html = render_to_string(self.template_name, {**self.context(), "csrf_token": CSRF_PLACEHOLDER})
            if html.count(CSRF_PLACEHOLDER) != 1:
                raise ValueError(f"{self.template_name} must hold exactly one {{% csrf_token %}}")
            head, tail = html.split(CSRF_PLACEHOLDER)
            rendered = self._rendered = (key, head, tail)
        return rendered[1], rendered[2]


_pages: list[CsrfOnlyPage] = []


@receiver(setting_changed)
def _forget_rendered_pages(**kwargs: Any) -> None:
    # Static file names, URLs and flags come from settings; tests change them with override_settings.
    for page in _pages:
        page.clear()
