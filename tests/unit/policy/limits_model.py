"""An in-memory stand-in for the rate limiter table, for pure-logic tests."""

from collections import defaultdict

from quotacache.policy.limits import Scope, decide


class SendTimes:
    """Send times per scope, as the rate limiter table keeps them."""

    def __init__(self):
        self.sent = defaultdict(list)

    def __call__(self, scope):
        return self.sent.get(scope, [])

    def record(self, scopes, now):
        for scope in scopes:
            self.sent[scope.name].append(now)


class MemoryBudget:
    """The dispatch Budget over SendTimes: a service scope plus one scope per endpoint."""

    def __init__(self, service, service_limits, endpoint_limits, headroom=0.0, jitter=0.25):
        self.sent = SendTimes()
        self.service = Scope(service, tuple(service_limits))
        self.endpoint_limits = tuple(endpoint_limits)
        self.headroom = headroom
        self.jitter = jitter

    def scopes(self, endpoint):
        return [self.service, Scope(f"{self.service.name}/{endpoint}", self.endpoint_limits)]

    def times(self, scope):
        return self.sent(scope)

    def check(self, endpoint, now):
        return decide(self.scopes(endpoint), self.sent, now, headroom=self.headroom,
                      jitter=self.jitter)

    def record(self, endpoint, now):
        self.sent.record(self.scopes(endpoint), now)
