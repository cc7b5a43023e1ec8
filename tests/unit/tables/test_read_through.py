"""Table values kept decoded in memory: own writes are seen at once, and a store rewritten
under the worker (partitions moved, a recovery ended) is read again."""

import pytest

from quotacache.tables.read_through import ReadThrough


@pytest.fixture
def table(app):
    return app.Table("probe-values", default=list, partitions=2)


async def test_own_writes_are_read_back_without_the_store(app, table, in_stream):
    values = ReadThrough(app, table)
    assert values.get("a") == []
    await in_stream(lambda: values.set("a", [1.0]))
    assert values.get("a") == [1.0] and table["a"] == [1.0]


@pytest.mark.parametrize("moved", ["assigned", "revoked", "recovered"])
async def test_a_store_rewritten_when_partitions_move_is_read_again(app, table, in_stream,
                                                                    moved):
    values = ReadThrough(app, table)
    await in_stream(lambda: values.set("a", [1.0]))
    table.data["a"] = [1.0, 2.0]  # what a recovery writes: the changelog's value
    assert values.get("a") == [1.0]  # until the move is seen, memory answers
    if moved == "assigned":
        await app.on_partitions_assigned.send(assigned=set())
    elif moved == "revoked":
        await app.on_partitions_revoked.send(revoked=set())
    else:
        await table.call_recover_callbacks()
    assert values.get("a") == [1.0, 2.0]
