"""Signals through which the apps above this one react to a subscriber's data requests and to SES events.

`subscriptions` must not import `newsletters`; the newsletter app keeps deliveries and archived emails, so it
listens here and erases or exports its part.
"""

from django.dispatch import Signal

#: Sent with ``subscriber`` just before the subscriber is deleted at their request.
subscriber_erasing = Signal()
#: Sent with ``subscriber`` when they download their data; receivers return a dict merged into the export.
subscriber_exporting = Signal()
#: Sent with ``event`` (the SES event, already verified) after the subscriber side of it has been applied.
ses_event_received = Signal()
