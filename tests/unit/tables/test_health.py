"""The service-health table: each service's pauses, hints and breaker, stored per service."""

import pytest

from quotacache.policy.health import ServiceHealth
from quotacache.tables.health import HealthTable


@pytest.fixture
def health(app):
    return HealthTable(app, partitions=2)


def test_a_service_never_stored_is_healthy(health):
    assert health.get("svc") == ServiceHealth()
    assert health.get("svc").admits(0.0, cooldown=30)[0]


async def test_a_stored_state_reads_back_with_its_pause_hint_and_breaker(health, in_stream):
    state = ServiceHealth()
    state.on_rate_limited(now=100.0, retry_after=30.0, default=60.0)
    state.on_hint(remaining=3, reset_at=200.0, limit=10)
    state.on_failure(now=100.0, threshold=1)
    await in_stream(lambda: health.put("svc", state))
    stored = health.get("svc")
    assert stored == state
    assert stored.breaker == "open" and stored.paused_until == 130.0


async def test_each_service_has_its_own_state(health, in_stream):
    paused = ServiceHealth(paused_until=500.0, pause_reason="429 from upstream")
    await in_stream(lambda: health.put("a", paused))
    assert health.get("a").paused_until == 500.0
    assert health.get("b") == ServiceHealth()


async def test_reading_gives_a_copy_that_changes_nothing_until_put(health, in_stream):
    await in_stream(lambda: health.put("svc", ServiceHealth()))
    health.get("svc").on_failure(now=1.0, threshold=1)
    assert health.get("svc").breaker == "closed"

