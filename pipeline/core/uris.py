"""Source URIs: kinds, credential masking, FFmpeg open options and readable open errors."""

from __future__ import annotations

import re
from pathlib import Path

import av

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "srt://")
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*)(?::[^@/\s]*)?@", re.IGNORECASE)


def mask_uri(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@" if m["user"] else f"{m['scheme']}***@", text)


def is_live(uri: str) -> bool:
    """True for network streams and capture devices, which cannot wait and may drop frames."""
    return uri.lower().startswith(LIVE_SCHEMES) or is_device(uri)


def is_device(uri: str) -> bool:
    """True for a V4L2 capture device such as /dev/video0."""
    return uri.startswith("/dev/video")


def open_container(uri: str, transport: str, open_timeout_s: float, read_timeout_s: float) -> av.container.InputContainer:
    """Open `uri` with PyAV: RTSP over `transport`, bounded open and read waits, V4L2 for devices."""
    options: dict[str, str] = {}
    fmt = None
    if uri.lower().startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = transport
    if uri.lower().startswith(("http://", "https://")):
        options["reconnect"] = "0"
    if is_device(uri):
        fmt = "v4l2"
    return av.open(uri, mode="r", format=fmt, options=options, timeout=(open_timeout_s, read_timeout_s))


def describe_open_error(exc: BaseException, uri: str) -> tuple[bool, str]:
    """(permanent, reason) for an error opening or reading `uri`; permanent errors are not retried."""
    if isinstance(exc, av.error.HTTPUnauthorizedError) or isinstance(exc, av.error.HTTPForbiddenError):
        return True, "wrong credentials: the server refused them (401/403)"
    if isinstance(exc, av.error.HTTPNotFoundError):
        return True, "stream not found on the server (404)"
    if isinstance(exc, (av.error.FileNotFoundError,)) and not is_live(uri):
        return True, f"file not found: {Path(uri)}"
    if isinstance(exc, av.error.InvalidDataError):
        return not is_live(uri), "not a readable video (invalid data)"
    if isinstance(exc, (av.error.ConnectionRefusedError, ConnectionRefusedError)):
        return False, "connection refused"
    if isinstance(exc, (av.error.ExitError, TimeoutError, av.error.ConnectionResetError)):
        return False, "timed out or reset while waiting for data"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return False, mask_uri(text.split(": '")[0])
