"""The upstream side: one httpx client per service, with a transport seam for tests."""

from quotacache.upstream.client import UpstreamAnswer, UpstreamClient

__all__ = ["UpstreamAnswer", "UpstreamClient"]
