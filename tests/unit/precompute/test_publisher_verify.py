"""The publisher's read-back of its sample (``mg`` ... ``mn``): replies parsed as they arrive."""

from __future__ import annotations

import socket
import threading

from airflow_provider_mlp.precompute.publisher import _read_meta_gets


def test_a_value_ending_in_mn_does_not_end_the_reply() -> None:
    # A msgpack integer 0x4D4E encodes as 91 CD 4D 4E: the value's bytes end in "MN", and a read that
    # stopped at the first "MN\r\n" suffix returned before the real end line (seen in CI).
    value = b"\x91\xcdMN"
    first = b"VA 4 f0\r\n" + value + b"\r\n"
    rest = b"EN\r\nVA 2 f7\r\nok\r\nMN\r\n"
    ours, server = socket.socketpair()
    with ours, server:

        def serve() -> None:
            server.recv(1 << 16)
            server.sendall(first)  # the reply in two pieces, cut right after that value
            threading.Event().wait(0.2)
            server.sendall(rest)

        thread = threading.Thread(target=serve)
        thread.start()
        replies = _read_meta_gets(ours, "127.0.0.1:11211", b"mg a f v\r\nmg b f v\r\nmg c f v\r\nmn\r\n")
        thread.join()
    assert replies == [(0, value), None, (7, b"ok")]
