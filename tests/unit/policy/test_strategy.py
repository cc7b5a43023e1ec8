from quotacache.policy.strategy import (
    Strategy,
    StrategyState,
    Thresholds,
    adjust,
    budget_target,
    effective,
    pin,
    release,
)

T = Thresholds(conservative_above=0.8, minimal_above=0.9, normal_below=0.4, min_dwell=60)


def test_thresholds_from_normal():
    assert budget_target(Strategy.NORMAL, 0.79, T) is Strategy.NORMAL
    assert budget_target(Strategy.NORMAL, 0.81, T) is Strategy.CONSERVATIVE
    assert budget_target(Strategy.NORMAL, 0.91, T) is Strategy.MINIMAL


def test_hysteresis_holds_the_strategy_between_the_thresholds():
    assert budget_target(Strategy.CONSERVATIVE, 0.5, T) is Strategy.CONSERVATIVE
    assert budget_target(Strategy.MINIMAL, 0.85, T) is Strategy.MINIMAL
    assert budget_target(Strategy.MINIMAL, 0.5, T) is Strategy.MINIMAL
    assert budget_target(Strategy.MINIMAL, 0.39, T) is Strategy.NORMAL
    assert budget_target(Strategy.CONSERVATIVE, 0.39, T) is Strategy.NORMAL


def test_every_transition_is_reachable_and_recorded_with_its_reason():
    state = StrategyState()
    assert adjust(state, 0.85, now=0, t=T) and state.strategy == "CONSERVATIVE"
    assert adjust(state, 0.95, now=1, t=T) and state.strategy == "MINIMAL"
    assert not adjust(state, 0.2, now=30, t=T)  # stepping down waits the dwell time
    assert adjust(state, 0.2, now=61, t=T) and state.strategy == "NORMAL"
    assert adjust(state, 0.95, now=62, t=T) and state.strategy == "MINIMAL"  # up at once
    assert [h["to"] for h in state.history] == ["CONSERVATIVE", "MINIMAL", "NORMAL", "MINIMAL"]
    assert state.history[0]["reason"] == "budget use 85%"


def test_volatility_makes_a_symbol_aggressive_until_it_expires_unless_budget_forbids():
    state = StrategyState()
    assert effective(state, volatile_until=100, now=50) is Strategy.AGGRESSIVE
    assert effective(state, volatile_until=100, now=100) is Strategy.NORMAL
    assert effective(state, volatile_until=None, now=50) is Strategy.NORMAL
    adjust(state, 0.85, now=0, t=T)
    assert effective(state, volatile_until=100, now=50) is Strategy.CONSERVATIVE


def test_a_manual_pin_holds_until_released():
    state = StrategyState()
    pin(state, Strategy.MINIMAL, now=10)
    assert not adjust(state, 0.1, now=500, t=T) and state.strategy == "MINIMAL"
    release(state, now=600)
    assert adjust(state, 0.1, now=700, t=T) and state.strategy == "NORMAL"
    assert [h["reason"] for h in state.history] == ["manual pin", "manual pin released",
                                                    "budget use 10%"]
