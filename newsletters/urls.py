from django.urls import path

from . import archive_pages, views

app_name = "newsletters"

urlpatterns = [
    path("email/<str:token>/", views.view_in_browser, name="view"),
    path("email/<str:token>/images/<str:cid>", views.view_image, name="view-image"),
    path("send-now/<str:token>/", views.send_now, name="send-now"),
    path("send-now/job/<uuid:job_token>/", views.send_job, name="send-job"),
    path("send-now/job/<uuid:job_token>/status.json", views.send_job_status, name="send-job-status"),
    path("staff/preview/<int:subscriber_id>/<str:date>/", views.preview, name="preview"),
    path("archive/", archive_pages.archive_index, name="archive"),
    path("archive/feed.atom", archive_pages.ArchiveFeed(), name="archive-feed"),
    path("archive/<str:date>/", archive_pages.archive_day, name="archive-day"),
    path("archive/<str:date>/charts/<str:symbol>.png", archive_pages.archive_chart, name="archive-chart"),
]
