from django.urls import path

from . import views

app_name = "newsletters"

urlpatterns = [
    path("email/<str:token>/", views.view_in_browser, name="view"),
    path("email/<str:token>/images/<str:cid>", views.view_image, name="view-image"),
    path("staff/preview/<int:subscriber_id>/<str:date>/", views.preview, name="preview"),
]
