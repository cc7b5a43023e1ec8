"""``quotacache stats`` and ``watch`` fit an 80-column terminal: no heading or figure is cut."""

from __future__ import annotations

from rich.console import Console

from quotacache.client.console import COUNTERS, age, count, services_table, stats_table

BIG = {counter: 987_654_321 for counter in COUNTERS}


def stats(endpoints: list[str]) -> dict:
    return {"hit_rate": 0.912, "reads": 10**9, "upstream_calls": 3456, "calls_saved": 98765,
            "errors": 12, "dead_letters": 3, **BIG,
            "workers": {"http://127.0.0.1:6066": "ok", "http://127.0.0.1:6067": "timeout"},
            "endpoints": {name: BIG for name in endpoints},
            "freshness": {name: {"fresh": 12_345, "stale": 99_999, "oldest_age": 400 * 86400}
                          for name in endpoints}}


def render(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_stats_fits_80_columns_with_every_heading_and_figure_whole():
    from quotacache.settings import load_settings

    settings = load_settings()
    names = [f"{service}/{endpoint}" for service, config in settings.services.items()
             for endpoint in config.endpoints]
    text = render(stats_table(stats(names)))
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "…" not in text  # nothing cut with an ellipsis
    header = next(line for line in lines if line.startswith("endpoint"))
    for heading in [*COUNTERS.values(), "cached", "oldest"]:
        assert f" {heading}" in header, heading
    for name in names:  # every endpoint name whole, on one line
        assert any(line.strip().startswith(name.split("/")[1] + " ") for line in lines), name
    assert "988M" in text and "12k/100k" in text and "400d" in text


def test_a_long_endpoint_name_folds_instead_of_cutting_figures():
    name = "example/an_endpoint_name_much_longer_than_any_in_the_profiles_x"
    text = render(stats_table(stats([name])))
    assert "…" not in text and "988M" in text
    first_words = "".join(line.split()[0] for line in text.splitlines() if line.strip())
    assert name.split("/")[1] in first_words  # folded over lines, whole


def test_the_watch_services_table_fits_80_columns():
    limits = [{"scope": "cryptometer", "limit": "100/60", "used": 95, "allowance": 90},
              {"scope": "cryptometer/large_trades_activity", "limit": "10/60", "used": 10,
               "allowance": 9}]
    status = {"strategy": "CONSERVATIVE", "strategy_pinned": True, "breaker": "half_open",
              "budget_use": 0.95, "limits": limits,
              "queue": {"critical": 0, "high": 2, "medium": 0, "low": 13}}
    text = render(services_table({"kingfisher_telegram": status, "cryptometer": status,
                                  "kingfisher_airtable": {"error": "owner unreachable"}}))
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "CONSERVATIVE*" in text and "kingfisher_telegram" in text and "0/2/0/13" in text


def test_counts_and_ages_are_at_most_4_characters():
    assert [count(n) for n in (0, 9999, 10_000, 99_499, 999_499, 999_500, 9_960_000,
                               1_500_000_000)] == \
        ["0", "9999", "10k", "99k", "999k", "1.0M", "10M", "1.5G"]
    assert [age(s) for s in (0, 59.4, 90, 3599, 36000, 86400 * 3, 86400 * 400)] == \
        ["0s", "59s", "2m", "1.0h", "10h", "3.0d", "400d"]
    assert all(len(count(10**k)) <= 4 for k in range(15))
    assert all(len(age(10**k)) <= 4 for k in range(8))
