"""The client side: publish requests, read over HTTP, or keep a local replica of the data."""

from quotacache.client.client import Client
from quotacache.client.replica import LocalReplica, subscribe

__all__ = ["Client", "LocalReplica", "subscribe"]
