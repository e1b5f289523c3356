"""Start and stop the GStreamer RTSP server of tests/rtsp_server.py from tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.sinks.redis_server import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")


class RtspServer:
    """An RTSP server process serving `mounts` (name to MP4 path) on a fixed port, restartable."""

    def __init__(self, mounts: dict[str, Path], user: str | None = None, password: str | None = None) -> None:
        self.port = free_port()
        self.mounts = mounts
        self.credentials = (user, password)
        self._process: subprocess.Popen | None = None

    def url(self, mount: str, user: str | None = None, password: str | None = None) -> str:
        """rtsp:// URL of a mount, with credentials when given."""
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/{mount}"

    def start(self) -> RtspServer:
        """Start serving; returns once the server listens."""
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        command += [arg for name, path in self.mounts.items() for arg in ("--mount", f"{name}={path}")]
        user, password = self.credentials
        if user:
            command += ["--user", user, "--password", password or ""]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._process.stdout.readline().strip()
        if line != "ready":
            self._process.kill()
            raise RuntimeError(f"RTSP server did not start: {line} {self._process.stderr.read()}")
        return self

    @property
    def pid(self) -> int:
        """The running server's process id (to pause it with SIGSTOP, as a network cut would)."""
        assert self._process is not None, "the server is not started"
        return self._process.pid

    def kill(self) -> None:
        """Kill the server abruptly, as a crash or a network cut would."""
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
