import logging

from quotacache import redact


def test_secrets_are_masked_in_messages_args_and_tracebacks(caplog):
    redact.install(["sk-unit-secret-77"])
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.INFO):
        log.info("GET http://x/?api_key=%s", "sk-unit-secret-77")
        try:
            raise RuntimeError("key sk-unit-secret-77 rejected")
        except RuntimeError:
            log.exception("failed")
    text = caplog.text
    assert "sk-unit-secret-77" not in text
    assert "api_key=***" in text and "key *** rejected" in text


def test_a_key_is_masked_as_written_and_in_every_url_encoding():
    """An upstream may echo the URL it was asked, normalised or not."""
    from urllib.parse import quote, quote_plus

    key = "sk/unit+key=99"
    redact.install([key])
    for form in (key, quote(key), quote(key, safe=""), quote_plus(key)):
        assert redact.redact(f"echo: {form}.") == "echo: ***.", form
