"""Addresses out of the error texts stored before they were redacted on the way in (SES answers, the in-flight
listing of a run): run records and delivery rows outlive a subscriber's erasure."""

from django.db import migrations
from django.db.models import Q

from walter_site.redaction import redact, redact_data


def redact_stored_errors(apps, schema_editor):
    Delivery = apps.get_model("newsletters", "Delivery")
    DailyRun = apps.get_model("newsletters", "DailyRun")
    named = Delivery.objects.filter(Q(error__contains="@") | Q(error__icontains="%40")).only("pk", "error")
    for delivery in named.iterator(chunk_size=1000):
        cleaned = redact(delivery.error)
        if cleaned != delivery.error:
            Delivery.objects.filter(pk=delivery.pk).update(error=cleaned)
    for run in DailyRun.objects.only("pk", "errors", "summary").iterator(chunk_size=1000):
        errors, summary = redact_data(run.errors), redact(run.summary)
        if (errors, summary) != (run.errors, run.summary):
            DailyRun.objects.filter(pk=run.pk).update(errors=errors, summary=summary)


class Migration(migrations.Migration):
    dependencies = [("newsletters", "0004_analysis_published_at")]

    operations = [migrations.RunPython(redact_stored_errors, migrations.RunPython.noop, elidable=True)]
