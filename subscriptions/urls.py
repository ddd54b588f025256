from django.urls import path

from . import views, webhooks

app_name = "subscriptions"

urlpatterns = [
    path("", views.subscribe, name="subscribe"),
    path("subscribe/check-your-inbox/", views.check_inbox, name="check_inbox"),
    path("confirm/<str:token>/", views.confirm, name="confirm"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("preferences/<str:token>/", views.preferences, name="preferences"),
    path("my-data/download/<str:token>/", views.data_export, name="data_export"),
    path("my-data/delete/<str:token>/", views.data_delete, name="data_delete"),
    path("api/tickers/search", views.ticker_search, name="ticker_search"),
    path("webhooks/ses/", webhooks.ses_events, name="ses_events"),
]
