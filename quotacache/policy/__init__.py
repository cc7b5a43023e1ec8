"""Pure decisions: limits, dispatch, strategy, freshness, service health, upstream policy.

Nothing here imports faust, aiohttp or httpx (an import-linter contract checks it): each
decision is a plain function of its inputs and a clock, unit-tested without a broker.
"""
