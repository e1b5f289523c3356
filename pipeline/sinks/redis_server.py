"""Start a private redis-server, or a Redis Cluster of them, on free loopback ports (the demo and the tests)."""

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


def free_ports(count: int) -> list[int]:
    """`count` different TCP ports on 127.0.0.1 that are free right now (held together while chosen, so that no
    two are the same)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


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


class LocalRedisCluster:
    """A Redis Cluster of `nodes` primaries (no replicas), each a `LocalRedisServer`, slots spread evenly.

    Use as a context manager; `url` (the first node's) is ready, with every slot served, once
    `start()` returns.
    """

    def __init__(self, nodes: int = 3, persist: bool = False, extra_args: tuple[str, ...] = ()) -> None:
        """`persist` keeps each node's data across its restart; `extra_args` go to every node's redis-server
        (e.g. ("--cluster-node-timeout", "60000"))."""
        ports = free_ports(2 * nodes)  # a client port and a cluster bus port per node, none the same
        self.servers = [
            LocalRedisServer(port, persist=persist, extra_args=("--cluster-enabled", "yes", "--cluster-config-file",
                                                                "nodes.conf", "--cluster-port", str(bus), *extra_args))
            for port, bus in zip(ports[::2], ports[1::2])
        ]
        self.url = self.servers[0].url

    def start(self) -> LocalRedisCluster:
        """Start the nodes, join them with `redis-cli --cluster create`, wait for `cluster_state:ok`."""
        binary = shutil.which("redis-cli")
        if binary is None:
            raise SinkError("redis-cli is not installed (Debian: apt-get install redis-tools)")
        try:
            for server in self.servers:
                server.start()
            addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
            created = subprocess.run([binary, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                                      "--cluster-yes"], capture_output=True, text=True, timeout=60)
            if created.returncode != 0:
                raise SinkError(f"redis-cli --cluster create failed: {created.stdout[-500:]}{created.stderr[-500:]}")
            self._wait_until_ok()
        except BaseException:
            self.cleanup()
            raise
        return self

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [redis.Redis.from_url(server.url).cluster("info")["cluster_state"] for server in self.servers]
            if all(state == "ok" for state in states):
                return
            time.sleep(0.1)
        raise SinkError(f"the cluster on ports {[server.port for server in self.servers]} did not reach cluster_state:ok")

    def cleanup(self) -> None:
        """Stop every node and delete their data folders."""
        for server in self.servers:
            server.cleanup()

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
