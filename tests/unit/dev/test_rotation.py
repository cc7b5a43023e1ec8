"""A rotation cut short (the worker died in it) makes the next start discard the data
dir: its persisted offsets may not match the re-created changelogs."""

from quotacache.dev.broker import discard_stale_data_dir
from quotacache.dev.rotation import MARKER, discard_if_interrupted


def test_a_data_dir_left_in_a_rotation_is_discarded_at_the_next_start(tmp_path):
    data = tmp_path / "data"
    discard_stale_data_dir(data, "cluster-1")
    (data / "cache-0.db").write_text("rocksdb")
    assert not discard_if_interrupted(data)
    assert not discard_stale_data_dir(data, "cluster-1", force=discard_if_interrupted(data))
    (data / MARKER).write_text("2")
    assert discard_if_interrupted(data)
    assert discard_stale_data_dir(data, "cluster-1", force=discard_if_interrupted(data))
    assert not (data / "cache-0.db").exists() and not discard_if_interrupted(data)


def test_the_broker_is_found_by_the_port_it_listens_on():
    import os
    import socket

    from quotacache.dev.broker_probe import listening_pid, rss_mb

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert listening_pid(port) == os.getpid()
        assert rss_mb(os.getpid()) > 1
    assert listening_pid(port) is None
