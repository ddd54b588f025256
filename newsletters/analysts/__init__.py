"""Analysts, chosen by the NEWSLETTER_ANALYST setting."""

from walter_site.backends import load_backend

from .base import STANCES, AnalysisResult, Analyst, AnalystError

__all__ = ["STANCES", "AnalysisResult", "Analyst", "AnalystError", "get_analyst"]


def get_analyst() -> Analyst:
    return load_backend("NEWSLETTER_ANALYST")
