"""Exit 0 when a Kafka broker answers a Metadata request listing at least one broker.

Stdlib only (runs before the project venv exists). Usage: kafka_ready.py HOST PORT
Sends Metadata v4 (the oldest version Kafka 4.x still accepts) for all topics.
"""

import socket
import struct
import sys


def metadata_ok(host: str, port: int, timeout: float = 3.0) -> bool:
    client_id = b"callvault-stack"
    # request header v1: api_key, api_version, correlation_id, client_id
    header = struct.pack(">hhih", 3, 4, 42, len(client_id)) + client_id
    # Metadata v4 body: topics = null (all), allow_auto_topic_creation = false
    body = struct.pack(">ib", -1, 0)
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        raw = b""
        while len(raw) < 4:
            chunk = sock.recv(4 - len(raw))
            if not chunk:
                return False
            raw += chunk
        (size,) = struct.unpack(">i", raw)
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                return False
            data += chunk
    correlation_id, _throttle, n_brokers = struct.unpack(">iii", data[:12])
    return correlation_id == 42 and n_brokers >= 1


if __name__ == "__main__":
    try:
        ok = metadata_ok(sys.argv[1], int(sys.argv[2]))
    except (OSError, struct.error):
        ok = False
    sys.exit(0 if ok else 1)
