import datetime as dt

from markets.providers.demo import DemoProvider


def test_large_us_names_are_listed_in_the_demo_directory():
    listed = {t.symbol for t in DemoProvider().list_tickers()}
    assert {"PLTR", "COST", "AVGO"} <= listed


def test_a_new_name_has_a_history():
    bars = DemoProvider().daily_bars("PLTR", dt.date(2026, 10, 1), dt.date(2026, 11, 20))
    assert bars and all(b.close > 0 for b in bars)
