"""{% send_now_url subscriber %}: where a subscriber's own pages post "send me the latest issue now"."""

from django import template
from django.urls import reverse

from subscriptions import tokens

register = template.Library()


@register.simple_tag
def send_now_url(subscriber) -> str:
    # The same signed token as the preferences page: whoever may manage the subscription may ask for the issue.
    return reverse("newsletters:send-now", args=[tokens.make_token(tokens.PREFERENCES, subscriber.pk)])
