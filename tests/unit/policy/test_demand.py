"""Read rates: warm-up span, decay, priors."""

import math

from quotacache.policy.demand import ReadRates


def test_a_steady_rate_is_not_under_estimated_while_the_estimator_warms_up():
    rates = ReadRates(tau=60.0, prior=0.0)
    for i in range(100):
        rates.read("svc/ticker/BTC", i * 0.1)  # 10 reads/s for 10 s
    assert 8.0 < rates.rate("svc/ticker/BTC", 10.0) < 12.0


TAU = 60.0


def read_steadily(rates, key, per_second, seconds, start=0.0):
    step = 1.0 / per_second
    for i in range(int(seconds * per_second)):
        rates.read(key, start + i * step)
    return start + seconds


def test_a_key_never_read_has_no_rate():
    assert ReadRates(tau=TAU).rate("svc/ticker/BTC", now=100.0) == 0.0


def test_a_key_read_steadily_settles_at_its_read_rate():
    rates = ReadRates(tau=TAU)
    end = read_steadily(rates, "svc/ticker/BTC", per_second=2, seconds=20 * TAU)
    assert math.isclose(rates.rate("svc/ticker/BTC", end), 2.0, rel_tol=0.02)


def test_a_rate_stays_exact_past_the_hours_a_plain_exponential_weight_would_overflow():
    # A read's weight is exp(elapsed / tau): without moving its origin it overflows after
    # about 709 tau (12 hours at tau 60 s).
    rates = ReadRates(tau=TAU)
    end = read_steadily(rates, "svc/ticker/BTC", per_second=0.5, seconds=800 * TAU)
    assert math.isclose(rates.rate("svc/ticker/BTC", end), 0.5, rel_tol=0.02)
    assert rates.rate("svc/ticker/ETH", end) == 0.0


def test_a_key_nobody_reads_any_more_fades_away():
    rates = ReadRates(tau=TAU)
    end = read_steadily(rates, "svc/ticker/BTC", per_second=1, seconds=10 * TAU)
    before = rates.rate("svc/ticker/BTC", end)
    assert rates.rate("svc/ticker/BTC", end + TAU) < before / 2
    assert rates.rate("svc/ticker/BTC", end + 20 * TAU) < 1e-6


def test_a_key_read_more_often_has_the_higher_rate():
    rates = ReadRates(tau=TAU)
    read_steadily(rates, "svc/ticker/BTC", per_second=4, seconds=TAU)
    end = read_steadily(rates, "svc/ticker/ETH", per_second=1, seconds=TAU)
    assert rates.rate("svc/ticker/BTC", end) > rates.rate("svc/ticker/ETH", end)


def test_a_first_read_of_a_popular_symbol_on_a_busy_endpoint_ranks_above_a_quiet_one():
    rates = ReadRates(tau=TAU)
    read_steadily(rates, "svc/ticker/ETH", per_second=5, seconds=TAU)  # a busy endpoint
    end = read_steadily(rates, "svc/ratio/BTC", per_second=5, seconds=TAU)  # a popular symbol
    rates.read("svc/ticker/BTC", end)
    rates.read("svc/quiet/DOGE", end)
    assert rates.rate("svc/ticker/BTC", end) > 10 * rates.rate("svc/quiet/DOGE", end)


def test_the_map_is_bounded_and_keeps_the_busier_keys():
    rates = ReadRates(tau=TAU, max_keys=50)
    end = read_steadily(rates, "svc/ticker/HOT", per_second=5, seconds=TAU)
    for i in range(200):
        rates.read(f"svc/ticker/COLD{i}", end)
    assert len(rates) <= 50
    assert rates.rate("svc/ticker/HOT", end) > 1.0


def test_a_key_whose_reads_stopped_is_renewed_about_once_more_not_for_minutes():
    rates = ReadRates()
    key = "cryptometer/ticker/BTC"
    for i in range(600):  # 10 reads a second for a minute
        rates.read(key, i / 10)
    last = 59.9
    assert rates.worth_renewing(key, last + 1, ttl=24)
    assert rates.worth_renewing(key, last + 20, ttl=24)
    # its decayed rate still says several reads a second, but 30 s passed without one
    assert rates.rate(key, last + 30) * 24 > 10
    assert not rates.worth_renewing(key, last + 30, ttl=24)


def test_a_renewal_must_buy_a_fresh_read():
    rates = ReadRates()
    often, rarely = "s/e/OFTEN", "s/e/RARELY"
    for second in range(0, 600, 10):  # every 10 s, TTL 60 s: six reads a TTL
        rates.read(often, float(second))
    for second in range(0, 600, 120):  # every 2 TTLs: a renewal would buy half a read
        rates.read(rarely, float(second) + 5)
    assert rates.worth_renewing(often, 601.0, ttl=60)
    assert not rates.worth_renewing(rarely, 601.0, ttl=60)
