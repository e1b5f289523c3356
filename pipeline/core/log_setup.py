"""Logging for every process of a run (the command line, and Ray actors on other nodes): one format, and the
credentials of any URI masked in every record."""

from __future__ import annotations

import logging
import os

from pipeline.core.uris import mask_uri


class MaskCredentials(logging.Filter):
    """Masks the credentials of any URI in a log record, whichever module logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_uri(record.getMessage()), None
        return True


def configure_logging(verbose: bool = False) -> None:
    """INFO (DEBUG when `verbose`) lines with the time, credentials masked on every handler."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, MaskCredentials) for existing in handler.filters):
            handler.addFilter(MaskCredentials())
    if not verbose:
        os.environ.setdefault("YOLO_VERBOSE", "False")  # read when ultralytics is first imported
