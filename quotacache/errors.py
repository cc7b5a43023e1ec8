"""The one exception hierarchy of quotacache: every error a user can meet derives from here."""

from __future__ import annotations


class QuotacacheError(Exception):
    """Base of every quotacache error."""


class ConfigError(QuotacacheError):
    """The configuration file or environment is invalid; the message names the key."""


class UnknownTarget(QuotacacheError):
    """A service or endpoint that the configuration does not declare."""


class InvalidSymbol(QuotacacheError):
    """A symbol that cannot be sent upstream (wrong characters or length)."""


class UpstreamError(QuotacacheError):
    """The upstream answered with something that is not data (error status, garbage, refusal)."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None, retryable: bool = True):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        #: False when the same call would fail the same way again (a 4xx other than 429,
        #: an oversized or malformed body): retrying it only spends budget.
        self.retryable = retryable


class NotDelivered(QuotacacheError):
    """The broker did not take a record the API was asked to publish (the message says why)."""


class BrokerError(QuotacacheError):
    """The embedded broker could not be started or reached."""
