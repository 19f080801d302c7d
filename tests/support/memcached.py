"""Real memcached servers for tests and benchmarks: the Debian ``memcached`` binary on 127.0.0.1.

Each :class:`MemcachedProcess` listens on a free port; it can be SIGKILLed and restarted (empty)
on the same port, and is always stopped by the context manager or fixture that started it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MemcachedProcess:
    """One memcached process on ``127.0.0.1:<port>``."""

    def __init__(
        self, port: int | None = None, *, memory_mb: int = 64, item_size: str | None = None, args: tuple[str, ...] = ()
    ) -> None:
        binary = shutil.which("memcached")
        if binary is None:
            raise RuntimeError("memcached is not installed (apt-get install memcached)")
        self.binary = binary
        self.port = port or free_port()
        self.memory_mb = memory_mb
        self.item_size = item_size
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> MemcachedProcess:
        command = [
            self.binary,
            "-l",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "0",
            "-m",
            str(self.memory_mb),
            "-t",
            "2",
        ]
        if self.item_size:
            command += ["-I", self.item_size]
        if os.geteuid() == 0:
            command += ["-u", getpass.getuser()]
        command += list(self.args)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"memcached on port {self.port} exited at start: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"memcached on port {self.port} did not start listening")

    def kill(self) -> None:
        """SIGKILL: the server disappears mid-whatever, as a crashed host would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        # A test server keeps nothing worth a graceful shutdown (which takes memcached about a second).
        self.kill()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def restart(self) -> MemcachedProcess:
        """Kill and start again on the same port: the server comes back empty."""
        self.kill()
        self.stop()
        return self.start()

    def __enter__(self) -> MemcachedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running_memcached(count: int = 1, **kwargs: object) -> Iterator[list[MemcachedProcess]]:
    """``count`` memcached servers, stopped on exit whatever happens."""
    with ExitStack() as stack:
        yield [stack.enter_context(MemcachedProcess(**kwargs)) for _ in range(count)]  # type: ignore[arg-type]
