"""The upstream side: one httpx client per service, with a transport seam for tests."""

from quotacache.upstream.client import UpstreamAnswer, UpstreamClient, parse_retry_after

__all__ = ["UpstreamAnswer", "UpstreamClient", "parse_retry_after"]
