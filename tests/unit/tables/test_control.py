"""Cluster-wide control tables: monitored symbols, strategies, volatile symbols.

They are global tables that views and timers write directly (no stream iteration); a
write needs a running event loop, hence the async tests.
"""

import pytest

from quotacache.policy.strategy import Strategy, StrategyState, pin
from quotacache.tables import control as control_module
from quotacache.tables.control import ControlTables


@pytest.fixture
def control(app):
    return ControlTables(app)


def test_every_control_table_is_global_with_one_partition(control):
    for table in (control.monitored, control.strategies, control.volatile):
        assert table.is_global and table.partitions == 1


def test_a_service_never_changed_is_normal_and_not_pinned(control):
    state = control.strategy("svc")
    assert (state.strategy, state.pinned) == ("NORMAL", False)
    assert control.current("svc") is Strategy.NORMAL


async def test_a_saved_strategy_reads_back_with_its_history(control):
    state = StrategyState()
    pin(state, Strategy.MINIMAL, now=50.0)
    control.save_strategy("svc", state)
    assert control.strategy("svc") == state
    assert control.current("svc") is Strategy.MINIMAL
    assert control.strategy("other").strategy == "NORMAL"


async def test_a_symbol_is_volatile_until_its_time_has_come(control):
    control.volatile["BTC"] = 100.0
    assert control.volatile_until("BTC", now=99.9) == 100.0
    assert control.volatile_until("BTC", now=100.0) is None
    assert control.volatile_until("ETH", now=50.0) is None


async def test_a_market_wide_signal_covers_every_symbol(control):
    control.volatile["*"] = 100.0
    assert control.volatile_until("ETH", now=50.0) == 100.0


async def test_the_later_of_the_symbols_and_the_markets_signal_holds(control):
    control.volatile["BTC"] = 200.0
    control.volatile["*"] = 100.0
    assert control.volatile_until("BTC", now=150.0) == 200.0
    control.volatile["*"] = 300.0
    assert control.volatile_until("BTC", now=150.0) == 300.0


async def test_monitored_endpoints_are_listed_per_symbol(control):
    control.monitored["BTC"] = ["svc/ticker", "svc/ratio"]
    control.monitored["ETH"] = ("svc/ticker",)
    assert control.monitored_endpoints() == {"BTC": ["svc/ticker", "svc/ratio"],
                                             "ETH": ["svc/ticker"]}


async def test_a_symbol_no_longer_monitored_is_not_listed(control):
    control.monitored["BTC"] = ["svc/ticker"]
    del control.monitored["BTC"]
    assert control.monitored_endpoints() == {}


async def test_marking_a_symbol_volatile_sets_until_when(control):
    assert control.mark_volatile("BTC", until=100.0, now=0.0)
    assert control.volatile_until("BTC", now=50.0) == 100.0


async def test_no_more_symbols_than_the_cap_are_volatile_at_once(control, monkeypatch):
    monkeypatch.setattr(control_module, "MAX_VOLATILE", 2)
    assert control.mark_volatile("A", until=100.0, now=0.0)
    assert control.mark_volatile("B", until=100.0, now=0.0)
    assert not control.mark_volatile("C", until=100.0, now=0.0)
    assert control.volatile_until("C", now=50.0) is None
    assert control.mark_volatile("A", until=200.0, now=0.0)  # one already marked: renewed
    assert control.volatile_until("A", now=150.0) == 200.0


async def test_expired_marks_make_room_for_new_ones(control, monkeypatch):
    monkeypatch.setattr(control_module, "MAX_VOLATILE", 2)
    control.mark_volatile("A", until=10.0, now=0.0)
    control.mark_volatile("B", until=100.0, now=0.0)
    assert control.mark_volatile("C", until=100.0, now=10.0)
    assert "A" not in control.volatile
