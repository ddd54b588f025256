"""Render one subscriber's email for a date without sending or recording anything."""

from __future__ import annotations

import datetime as dt

from markets.selectors import ticker_snapshots
from subscriptions.links import preferences_url, unsubscribe_url
from subscriptions.models import Subscriber
from subscriptions.selectors import holdings_of

from .analysis import analysis_unsaved
from .analysts.rule_based import RuleBasedAnalyst
from .compose import ComposedEmail, PersonalLinks, email_compose, issue_content_build
from .selectors import stored_analyses


def preview_email(*, subscriber: Subscriber, day: dt.date) -> ComposedEmail:
    """From current data: stored analyses where they exist, the rule-based analyst's otherwise (not stored)."""
    symbols = sorted(subscriber.tickers.values_list("symbol", flat=True))
    snapshots = ticker_snapshots(symbols, day)
    analyses = stored_analyses(day=day, symbols=symbols)
    for symbol, snapshot in snapshots.items():
        if symbol not in analyses and snapshot.has_data and not snapshot.stale:
            analyses[symbol] = analysis_unsaved(day=day, snapshot=snapshot, result=RuleBasedAnalyst().analyze(snapshot))
    content = issue_content_build(day=day, snapshots=snapshots, analyses=analyses)
    links = PersonalLinks(
        view="#preview",
        preferences=preferences_url(subscriber.id),
        unsubscribe=unsubscribe_url(subscriber.id),
    )
    return email_compose(
        content=content, symbols=symbols, email=subscriber.email, links=links, holdings=holdings_of(subscriber)
    )
