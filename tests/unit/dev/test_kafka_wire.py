"""The metadata probe against a loopback socket that answers as a broker's wire would."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from quotacache.dev.kafka_wire import metadata_broker_ports


def serve_once(answers: dict[int, bytes]) -> tuple[int, threading.Thread]:
    """A listener that answers each request by its API key with ``answers[key]``."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        with listener, listener.accept()[0] as conn:
            while head := conn.recv(4, socket.MSG_WAITALL):
                (size,) = struct.unpack(">i", head)
                request = conn.recv(size, socket.MSG_WAITALL)
                api, _version, corr = struct.unpack_from(">hhi", request)
                body = struct.pack(">i", corr) + answers[api]
                conn.sendall(struct.pack(">i", len(body)) + body)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread


def api_versions(metadata_max: int, error: int = 0) -> bytes:
    return struct.pack(">hi", error, 1) + struct.pack(">hhh", 3, 0, metadata_max)


def metadata_v8(*ports: int) -> bytes:
    brokers = b"".join(struct.pack(">ih", node, 9) + b"127.0.0.1" + struct.pack(">ih", port, -1)
                       for node, port in enumerate(ports))
    return struct.pack(">ii", 0, len(ports)) + brokers + b"\x00" * 16  # the rest is not read


def test_the_probe_lists_the_ports_of_the_brokers_the_metadata_names():
    port, thread = serve_once({18: api_versions(12), 3: metadata_v8(9092, 9093)})
    assert metadata_broker_ports("127.0.0.1", port, timeout=5) == [9092, 9093]
    thread.join(5)


def test_a_broker_that_refuses_api_versions_is_an_error_not_an_empty_list():
    port, thread = serve_once({18: api_versions(12, error=35)})
    with pytest.raises(ValueError, match="ApiVersions error 35"):
        metadata_broker_ports("127.0.0.1", port, timeout=5)
    thread.join(5)


def test_a_broker_without_a_usable_metadata_version_is_named():
    port, thread = serve_once({18: api_versions(0)})
    with pytest.raises(ValueError, match=r"no Metadata version in 1\.\.8"):
        metadata_broker_ports("127.0.0.1", port, timeout=5)
    thread.join(5)
