"""The dashboard's server-side figures (binding limit, fresh share, calls per window) and
the snapshot embedded in the page."""

import json
import re

import pytest

from quotacache.web.dashboard import (
    SNAPSHOT_SLOT,
    Deltas,
    budget,
    embed_json,
    render_page,
    static_file,
)

SERVICES = ["cm", "kf"]


def stats(workers=("w1",), **endpoints):
    """Cluster stats with counters per endpoint: name=(hits, misses, stale, calls)."""
    counts = {name.replace("__", "/"): {"hits": h, "misses": m, "stale_served": s,
                                        "upstream_calls": c}
              for name, (h, m, s, c) in endpoints.items()}
    totals = {f: sum(c[f] for c in counts.values())
              for f in ("hits", "misses", "stale_served", "upstream_calls")}
    reads = totals["hits"] + totals["misses"] + totals["stale_served"]
    return {**totals, "reads": reads, "endpoints": counts,
            "workers": dict.fromkeys(workers, "ok")}


def test_the_embedded_snapshot_cannot_close_its_script_element():
    hostile = {"error": "</script><script>alert(1)</script><!-- & \u2028 é"}
    text = embed_json(hostile)
    assert not re.search(r"[<>&\u2028]", text) and text.isascii()
    assert json.loads(text) == hostile  # what JSON.parse reads back
    page = render_page(static_file("dashboard.html").decode(), {"services": hostile})
    assert page.count("</script>") == static_file("dashboard.html").decode().count("</script>")
    embedded = re.search(r'id="snapshot">(.*?)</script>', page, re.S).group(1)
    assert json.loads(embedded) == {"services": hostile}


def test_the_page_must_have_exactly_one_slot():
    with pytest.raises(ValueError):
        render_page("<html></html>", {})
    slot = SNAPSHOT_SLOT.format("null")
    with pytest.raises(ValueError):
        render_page(slot + slot, {})


def test_the_first_look_counts_since_the_counters_started():
    deltas = Deltas(fresh_window=10, calls_window=60)
    first = deltas.measure(100.0, stats(cm__a=(6, 2, 0, 3), kf__b=(0, 0, 0, 1)), SERVICES)
    assert first["fresh"]["seconds"] is None
    assert first["fresh"]["overall"] == {"hits": 6, "reads": 8, "share": 0.75}
    assert first["fresh"]["services"]["kf"] == {"hits": 0, "reads": 0, "share": None}
    assert first["calls"] == {"seconds": None, "overall": 4, "services": {"cm": 3, "kf": 1}}


def test_fresh_share_covers_the_window_and_calls_the_minute():
    deltas = Deltas(fresh_window=10, calls_window=60)
    for second in range(0, 31):  # one snapshot a second; 1 hit + 1 miss a second on cm/a
        snapshot = deltas.measure(1000.0 + second,
                                  stats(cm__a=(second, second, 0, second // 10)), SERVICES)
    assert snapshot["fresh"]["seconds"] == 10.0
    assert snapshot["fresh"]["services"]["cm"] == {"hits": 10, "reads": 20, "share": 0.5}
    assert snapshot["calls"]["seconds"] == 30.0  # only 30 s of snapshots so far
    assert snapshot["calls"]["overall"] == 3
    for second in range(31, 100):
        snapshot = deltas.measure(1000.0 + second, stats(cm__a=(second, 0, 0, second)), SERVICES)
    assert snapshot["calls"] == {"seconds": 60.0, "overall": 60,
                                 "services": {"cm": 60, "kf": 0}}
    assert len(deltas.samples) <= 63  # a minute of snapshots, not all of them


def test_after_a_pause_the_figures_cover_the_whole_gap():
    deltas = Deltas(fresh_window=10, calls_window=60)
    deltas.measure(0.0, stats(cm__a=(1, 1, 0, 1)), SERVICES)
    later = deltas.measure(600.0, stats(cm__a=(31, 1, 0, 2)), SERVICES)
    assert later["fresh"]["seconds"] == 600.0 and later["fresh"]["overall"]["share"] == 1.0
    assert later["calls"]["seconds"] == 600.0 and later["calls"]["overall"] == 1


def test_counters_that_went_down_give_no_share():
    deltas = Deltas()
    deltas.measure(0.0, stats(cm__a=(10, 10, 0, 5)), SERVICES)
    dropped = deltas.measure(1.0, stats(cm__a=(4, 9, 0, 3)), SERVICES)  # a restarted worker
    assert dropped["fresh"]["overall"]["share"] is None
    assert dropped["calls"]["overall"] is None


def test_another_set_of_workers_starts_the_counting_again():
    deltas = Deltas()
    deltas.measure(0.0, stats(cm__a=(10, 10, 0, 5)), SERVICES)
    both = deltas.measure(1.0, stats(("w1", "w2"), cm__a=(30, 10, 0, 9)), SERVICES)
    assert both["fresh"]["seconds"] is None and both["fresh"]["overall"]["share"] == 0.75


def test_the_binding_limit_is_the_fullest_service_limit():
    rows = [{"scope": "cm", "limit": "100/60", "used": 50, "allowance": 100, "left": 50},
            {"scope": "cm", "limit": "10/5", "used": 9, "allowance": 10, "left": 1},
            {"scope": "cm/ticker", "limit": "10/60", "used": 10, "allowance": 10, "left": 0},
            {"scope": "cm/other", "limit": "10/60", "used": 2, "allowance": 10, "left": 8}]
    found = budget({"limits": rows}, "cm")
    assert (found["limit"], found["used"], found["allowance"]) == ("10/5", 9, 10)
    assert found["seconds"] == 5.0 and found["share"] == 0.9
    assert found["endpoint"]["scope"] == "cm/ticker" and found["endpoint"]["share"] == 1.0


def test_with_nothing_used_the_binding_limit_is_the_one_with_fewest_calls_left():
    rows = [{"scope": "cm", "limit": "100/60", "used": 0, "allowance": 100, "left": 100},
            {"scope": "cm", "limit": "10/5", "used": 0, "allowance": 10, "left": 10}]
    found = budget({"limits": rows}, "cm")
    assert found["limit"] == "10/5" and found["share"] == 0.0 and found["endpoint"] is None


def test_no_limits_no_budget():
    assert budget({"error": "partitions not assigned yet"}, "cm") is None
    assert budget({"limits": []}, "cm") is None
