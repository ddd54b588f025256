from django.urls import path

from . import views

app_name = "newsletters"

urlpatterns = [
    path("email/<str:token>/", views.view_in_browser, name="view"),
    path("email/<str:token>/images/<str:cid>", views.view_image, name="view-image"),
    path("send-now/<str:token>/", views.send_now, name="send-now"),
    path("send-now/job/<uuid:job_token>/", views.send_job, name="send-job"),
    path("send-now/job/<uuid:job_token>/status.json", views.send_job_status, name="send-job-status"),
    path("staff/preview/<int:subscriber_id>/<str:date>/", views.preview, name="preview"),
]
