import pytest

from quotacache.errors import ConfigError
from quotacache.settings import Priority, RateLimit, load_settings, parse_duration


def write(tmp_path, text):
    path = tmp_path / "quotacache.toml"
    path.write_text(text)
    return path


def test_durations_accept_the_units_of_the_seed():
    assert parse_duration("2m") == 120
    assert parse_duration("6h") == 6 * 3600
    assert parse_duration(90) == 90
    assert parse_duration("1.5s") == 1.5
    for bad in ("soon", float("nan"), float("inf"), 0, -1):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_limits_parse_calls_per_seconds():
    assert RateLimit.model_validate("100/60") == RateLimit(calls=100, seconds=60)
    with pytest.raises(ValueError):
        RateLimit.model_validate("100 per minute")


def test_cryptometer_profile_ships_all_endpoints_with_seed_ttls_and_limits():
    settings = load_settings()
    crypto = settings.services["cryptometer"]
    assert len(crypto.endpoints) == 21
    assert crypto.endpoints["ticker"].ttl == 120
    assert crypto.endpoints["ticker"].priority is Priority.CRITICAL
    assert crypto.endpoints["coinlist"].ttl == 6 * 3600
    assert crypto.endpoints["forex_rates"].priority is Priority.LOW
    assert [str(lim) for lim in crypto.limits] == ["100/60", "20/10", "10/5"]
    assert [str(lim) for lim in crypto.endpoint_limits] == ["10/60"]
    assert crypto.auth.query == "api_key" and crypto.auth.env == "CRYPTOMETER_API_KEY"


def test_kingfisher_profile_has_levels_and_its_three_upstreams():
    settings = load_settings()
    kf = settings.services["kingfisher"]
    assert kf.endpoints["liquidation_map"].ttl == 300
    assert kf.endpoints["rsi_heatmap"].ttl == 900
    assert kf.endpoints["support_resistance"].ttl == 3600
    assert kf.endpoints["professional_report"].ttl == 6 * 3600
    assert [str(lim) for lim in kf.limits] == ["10/60"]
    assert [str(lim) for lim in settings.services["kingfisher_airtable"].limits] == ["5/10"]
    assert [str(lim) for lim in settings.services["kingfisher_telegram"].limits] == ["30/60"]


def test_a_user_service_is_added_without_code(tmp_path):
    settings = load_settings(write(tmp_path, """
profiles = []
[services.example]
base_url = "http://127.0.0.1:28080"
auth = { query = "api_key", env = "EXAMPLE_API_KEY" }
limits = ["100/60", "20/10"]
endpoint_limits = ["10/60"]
[services.example.endpoints.ticker]
path = "/api/ticker"
ttl = "2m"
priority = "critical"
"""))
    example = settings.services["example"]
    assert list(settings.services) == ["example"]
    assert example.endpoints["ticker"].ttl == 120
    assert example.limits_for("ticker") == [RateLimit(calls=10, seconds=60)]


def test_file_values_merge_over_a_profile(tmp_path):
    settings = load_settings(write(tmp_path, """
[services.cryptometer]
base_url = "http://127.0.0.1:9999"
endpoints.ticker.ttl = "30s"
"""))
    crypto = settings.services["cryptometer"]
    assert crypto.base_url == "http://127.0.0.1:9999"
    assert crypto.endpoints["ticker"].ttl == 30
    assert crypto.endpoints["ticker"].path == "/ticker/"


@pytest.mark.parametrize("text, key", [
    ('[services.example]\nbase_url = "ftp://x"\n', "services.example.base_url"),
    ('[services.cryptometer]\nlimits = ["lots"]\n', "services.cryptometer.limits.0"),
    ('[web]\nport = 99999\n', "web.port"),
    ('[services.cryptometer.endpoints.ticker]\nttl = "soon"\n',
     "services.cryptometer.endpoints.ticker.ttl"),
    ('[broker]\nurl = "redis://x"\n', "broker.url"),
    ('[services.cryptometer]\napi_key = "abc"\n', "services.cryptometer.api_key"),
    # nan <= 0 is False: not finite is not a duration, a limit's window, or a weight
    ('[services.cryptometer.endpoints.ticker]\nttl = nan\n',
     "services.cryptometer.endpoints.ticker.ttl"),
    ('[services.cryptometer]\ncall_deadline = inf\n', "services.cryptometer.call_deadline"),
    ('[services.cryptometer]\nlimits = [{calls = 1, seconds = inf}]\n',
     "services.cryptometer.limits.0.seconds"),
    ('[services.cryptometer]\nanswered_bonus = inf\n', "services.cryptometer.answered_bonus"),
    ('[services.cryptometer]\npriority_weights = {low = nan}\n',
     "services.cryptometer.priority_weights"),
    # shapes the profiles cannot be merged with
    ('services = 5\n', "services: must be a table"),
    ('services = ["cryptometer"]\n', "services: must be a table"),
    ('profiles = [["cryptometer"]]\n', "profiles: must be a list of profile names"),
    ('profiles = [{a = 1}]\n', "profiles: must be a list of profile names"),
])
def test_a_bad_file_fails_with_the_key_named(tmp_path, text, key):
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text))
    assert key in str(raised.value)


def test_bad_toml_and_missing_file_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[web\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot read .* Is a directory"):
        load_settings(tmp_path)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'[web]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match="cannot read .* not UTF-8 text"):
        load_settings(binary)


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("QUOTACACHE_WEB__PORT", "7123")
    settings = load_settings(write(tmp_path, "[web]\nport = 7000\n"))
    assert settings.web.port == 7123


def test_defaults_bind_to_loopback():
    settings = load_settings()
    assert settings.web.host == "127.0.0.1"
    assert settings.broker.url == "embedded"


def test_a_data_dir_from_another_broker_is_discarded(tmp_path):
    from quotacache.dev.broker import discard_stale_data_dir

    data = tmp_path / "data"
    assert not discard_stale_data_dir(data, "cluster-a")  # new: nothing to discard
    (data / "tables").mkdir()
    (data / "tables" / "cache.db").write_text("state")
    assert not discard_stale_data_dir(data, "cluster-a")  # same broker: kept
    assert (data / "tables" / "cache.db").exists()
    assert discard_stale_data_dir(data, "cluster-b")  # broker restarted: wiped
    assert not (data / "tables").exists()
    assert (data / "broker-cluster-id").read_text() == "cluster-b"


def test_a_file_with_its_own_service_gets_only_that_service(tmp_path):
    settings = load_settings(write(tmp_path, """
[services.example]
base_url = "http://127.0.0.1:28080"
[services.example.endpoints.ticker]
path = "/api/ticker"
ttl = "2m"
"""))
    assert list(settings.services) == ["example"]
    assert settings.profiles == []


def test_a_file_overriding_a_profile_service_gets_that_profile_only(tmp_path):
    settings = load_settings(write(tmp_path, """
[services.cryptometer]
base_url = "http://127.0.0.1:28080"
"""))
    assert list(settings.services) == ["cryptometer"]
    assert len(settings.services["cryptometer"].endpoints) == 21
    assert settings.profiles == ["cryptometer"]


def test_no_service_configured_means_both_built_in_profiles():
    settings = load_settings()
    assert {"cryptometer", "kingfisher"} <= set(settings.services)


def test_named_profiles_come_in_beside_own_services(tmp_path):
    settings = load_settings(write(tmp_path, """
profiles = ["kingfisher"]
[services.example]
base_url = "http://127.0.0.1:28080"
[services.example.endpoints.ticker]
path = "/api/ticker"
ttl = "2m"
"""))
    assert "example" in settings.services and "kingfisher" in settings.services
    assert "cryptometer" not in settings.services
