"""Start a private redis-server on a free loopback port (the demo and the tests use it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from pipeline.core.errors import SinkError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRedisServer:
    """A redis-server child process with its data in a temporary folder.

    Use as a context manager; `url` is ready once `start()` returns. `restart()` keeps the
    port and the data (an append-only file), as a real server restart would.
    """

    def __init__(self, port: int | None = None, persist: bool = False, extra_args: tuple[str, ...] = (),
                 password: str | None = None) -> None:
        """`extra_args` go to redis-server as they are (e.g. ("--maxmemory", "1mb")); `password` is
        required of clients and part of `url`."""
        self.port = port or free_port()
        self.persist = persist
        self.extra_args = extra_args
        self.password = password
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self._workdir = Path(tempfile.mkdtemp(prefix="emotion-redis-"))
        self._process: subprocess.Popen | None = None

    def start(self) -> LocalRedisServer:
        """Start the server and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise SinkError("redis-server is not installed (Debian: apt-get install redis-server)")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self._workdir)]
        command += ["--save", "", "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always"]
        command += ["--requirepass", self.password] if self.password else []
        command += list(self.extra_args)
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
                return self
            except redis.ConnectionError:
                if self._process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise SinkError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Terminate the server (data stays in its folder until `cleanup`)."""
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Kill the server abruptly, as a crash would."""
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        """Start again on the same port with the same data folder."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop and delete the data folder."""
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> LocalRedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
