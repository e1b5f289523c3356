"""Source URIs: kinds, credential masking, FFmpeg open options, readable open errors, and file paths
that must not be URIs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import SourceError

if TYPE_CHECKING:
    import av

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "srt://")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")
"""A URI given as a file path: a scheme, `://`, and everything up to white space or a quote."""
_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
_AUTHORITY_IN_TEXT = re.compile(rf"({_SCHEME})((?:(?!{_SCHEME})[^/?#\r\n])*)")
"""A URI's scheme and authority inside free text: the authority runs to the first `/`, `?` or `#` (or the line's
end, or the next URI), whatever else it holds: quotes, spaces, `<`, `>` and `@` are legal in a password that FFmpeg
sends, so they cannot end it."""


def mask_uri(text: str) -> str:
    """`text` with the credentials of every URI in it replaced by ***.

    As URL parsers (and FFmpeg) read it, the authority runs from `://` to the first `/`, `?`
    or `#`, and its userinfo is everything before the authority's last `@`, whatever it holds
    (`@`, quotes, spaces, `<`, `>`): such a password is masked whole. Where a URI without a path
    is followed by more text on its line, an `@` in that text masks it too: more is hidden,
    nothing is shown. The user name stays (`admin:***@host`); userinfo without a
    password may be a token and is masked whole (`***@host`).
    """
    return _AUTHORITY_IN_TEXT.sub(lambda match: match.group(1) + _masked_authority(match.group(2)), text)


def video_path(video: str | Path) -> Path:
    """`video` as a file path; a stream URI is refused (SourceError) before `Path` folds its `//`
    and hides its credentials from `mask_uri`."""
    if isinstance(video, str) and _URI.match(video):
        raise SourceError(f"{mask_uri(video)}: a URL, not a video file path "
                          "(process reads files; serve reads streams, listed under 'sources:' in its --config)")
    return Path(video)


def _masked_authority(authority: str) -> str:
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return authority
    user, colon, _password = userinfo.partition(":")
    masked = f"{user}:***" if colon and user and not any(character in user for character in " '\"<>") else "***"
    return f"{masked}@{host}"


def is_live(uri: str) -> bool:
    """True for network streams and capture devices, which cannot wait and may drop frames."""
    return uri.lower().startswith(LIVE_SCHEMES) or is_device(uri)


def is_device(uri: str) -> bool:
    """True for a V4L2 capture device such as /dev/video0."""
    return uri.startswith("/dev/video")


def open_container(uri: str, transport: str, open_timeout_s: float, read_timeout_s: float) -> av.container.InputContainer:
    """Open `uri` with PyAV: RTSP over `transport`, bounded open and read waits, V4L2 for devices."""
    import av

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
    import av

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
