"""The newsletter: analyses, issues, deliveries and the daily run.

One email's path, in order:

- ``pipeline.daily_run``: the day's stages, top-down (market data → analysis → delivery), recorded in a DailyRun;
- ``analysis``: one analysis per followed ticker per day (``analysts/`` hold the model and the rule-based writer);
- ``compose.issue_content_build``: what every reader shares, rendered once (cards, charts, the frame);
- ``delivery.deliveries_plan`` / ``deliveries_send``: one Delivery per subscriber, claimed, composed
  (``compose.email_compose``, links from ``links`` and ``subscriptions.links``), turned into the message
  (``messages.message_build``), archived (``archive``), handed over in windows (``sending.Sender``), recorded;
- ``dispatch`` and ``tasks``: the same batches on Celery workers; ``jobs``: "send me the latest issue now";
- ``views`` / ``preview``: the view-in-browser copy and the staff preview; ``selectors``: the reads.
"""
