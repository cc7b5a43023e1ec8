"""An in-memory stand-in for the windowed table's buckets, for pure-logic tests."""

from collections import defaultdict

from quotacache.policy.limits import Scope, decide


class Buckets:
    """Calls per (scope, second), as the windowed table keeps them."""

    def __init__(self):
        self.counts = defaultdict(int)

    def __call__(self, scope, second):
        return self.counts.get((scope, second), 0)

    def record(self, scopes, now):
        for scope in scopes:
            self.counts[(scope.name, int(now // 1))] += 1


class MemoryBudget:
    """The dispatch Budget over Buckets: a service scope plus one scope per endpoint."""

    def __init__(self, service, service_limits, endpoint_limits, headroom=0.1, shares=None):
        self.buckets = Buckets()
        self.service = Scope(service, tuple(service_limits))
        self.endpoint_limits = tuple(endpoint_limits)
        self.headroom = headroom
        self.shares = shares or {}

    def scopes(self, endpoint):
        return [self.service, Scope(f"{self.service.name}/{endpoint}", self.endpoint_limits,
                                    share=1.0)]

    def check(self, endpoint, now, priority):
        return decide(self.scopes(endpoint), self.buckets, now, headroom=self.headroom,
                      share=self.shares.get(priority.value, 1.0))

    def record(self, endpoint, now):
        self.buckets.record(self.scopes(endpoint), now)
