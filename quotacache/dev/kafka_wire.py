"""Just enough of the Kafka protocol to ask a broker for its metadata, with the standard
library only: ``dev/kafka_broker.py`` probes a starting broker with it, so the module that
starts Kafka for the tests does not depend on the client library those tests exercise.
"""

from __future__ import annotations

import socket
import struct

_API_METADATA, _API_VERSIONS = 3, 18


def metadata_broker_ports(host: str, port: int, *, timeout: float = 2.0) -> list[int]:
    """Ports of the brokers a Metadata request lists (empty while the broker starts).

    ApiVersions v0 first (every broker answers it), then the newest non-flexible
    Metadata version the broker supports (v1..v8), so this works on Kafka 3 and 4.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        body = _request(sock, _API_VERSIONS, 0, 1, b"")
        error, count = struct.unpack_from(">hi", body, 0)
        if error:
            raise ValueError(f"ApiVersions error {error}")
        ranges = {k: (lo, hi) for k, lo, hi in struct.iter_unpack(">hhh", body[6:6 + 6 * count])}
        lo, hi = ranges.get(_API_METADATA, (0, -1))
        version = min(hi, 8)
        if version < max(lo, 1):
            raise ValueError(f"no Metadata version in 1..8 (broker has {lo}..{hi})")
        request = struct.pack(">i", 0)  # empty topic list: brokers only
        if version >= 4:
            request += b"\x00"  # allow_auto_topic_creation
        if version >= 8:
            request += b"\x00\x00"  # include cluster/topic authorized operations
        body = _request(sock, _API_METADATA, version, 2, request)
        offset = 4 if version >= 3 else 0  # throttle_time_ms
        (brokers,) = struct.unpack_from(">i", body, offset)
        offset += 4
        ports = []
        for _ in range(brokers):
            (host_len,) = struct.unpack_from(">h", body, offset + 4)
            offset += 6 + host_len
            (broker_port,) = struct.unpack_from(">i", body, offset)
            offset += 4
            (rack_len,) = struct.unpack_from(">h", body, offset)  # nullable (-1)
            offset += 2 + max(rack_len, 0)
            ports.append(broker_port)
        return ports


def _request(sock: socket.socket, api: int, version: int, corr: int, body: bytes) -> bytes:
    """Send one request (header v1) and return the response body after its header v0."""
    client = b"quotacache-probe"
    message = struct.pack(">hhih", api, version, corr, len(client)) + client + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _recv(sock, 4))
    response = _recv(sock, size)
    (got,) = struct.unpack_from(">i", response, 0)
    if got != corr:
        raise ValueError(f"correlation id {got} != {corr}")
    return response[4:]


def _recv(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)
