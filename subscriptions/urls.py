from django.urls import path

from . import views, webhooks

app_name = "subscriptions"

urlpatterns = [
    path("", views.subscribe, name="subscribe"),
    path("subscribe/check-your-inbox/", views.check_inbox, name="check_inbox"),
    path("confirm/<str:token>/", views.confirm, name="confirm"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("preferences/<str:token>/", views.preferences, name="preferences"),
    path("api/tickers/search", views.ticker_search, name="ticker_search"),
    path("webhooks/ses/", webhooks.ses_events, name="ses_events"),
]
