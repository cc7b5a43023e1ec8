"""Read rates: warm-up span, and the owner's re-measurement of queued keys."""

from quotacache.policy.demand import ReadRates
from quotacache.policy.queue import FetchQueue
from quotacache.settings import Priority
from quotacache.streams.records import FetchOrder


def test_a_steady_rate_is_not_under_estimated_while_the_estimator_warms_up():
    rates = ReadRates(tau=60.0, prior=0.0)
    for i in range(100):
        rates.read("svc/ticker/BTC", i * 0.1)  # 10 reads/s for 10 s
    assert 8.0 < rates.rate("svc/ticker/BTC", 10.0) < 12.0


def test_a_read_of_a_queued_key_updates_its_rate():
    queue = FetchQueue()
    order = FetchOrder(service="svc", endpoint="ticker", symbol="BTC",
                       priority=Priority.CRITICAL, reason="read", requested_at=0.0, rate=0.1)
    queue.add(order.key, order)
    queue.measure(order.key, 2.0, 5.0)
    (queued,) = queue.entries()
    assert queued.rate(5.0) == 2.0
    queue.measure("svc/ticker/ETH", 1.0, 5.0)  # not queued: nothing happens
    assert len(queue) == 1
