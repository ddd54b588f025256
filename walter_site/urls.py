from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from .health import healthz, readyz

urlpatterns = [
    path(settings.ADMIN_URL, admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("", include("newsletters.urls")),
    path("", include("subscriptions.urls")),
]
