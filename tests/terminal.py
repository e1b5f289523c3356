"""A real pseudo-terminal to write to, for output that is drawn differently on a terminal."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading


class PseudoTerminal:
    """A pty: `stream` is its terminal end (`isatty()` is True, 120 columns); `text()` is what was written to it."""

    def __init__(self, columns: int = 120, rows: int = 40) -> None:
        self._size = struct.pack("HHHH", rows, columns, 0, 0)
        self._received = bytearray()

    def __enter__(self) -> PseudoTerminal:
        self._controller, terminal = os.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, self._size)
        self.stream = os.fdopen(terminal, "w", buffering=1)
        self._reader = threading.Thread(target=self._drain, daemon=True)  # a full pty would block the writer
        self._reader.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stream.close()
        self._reader.join(timeout=10)
        os.close(self._controller)

    def text(self) -> str:
        """Everything written so far (complete once the terminal is closed)."""
        return self._received.decode(errors="replace")

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self._controller, 65536)
            except OSError:  # EIO: the terminal end was closed
                return
            if not chunk:
                return
            self._received += chunk
