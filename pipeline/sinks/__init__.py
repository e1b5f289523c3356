"""Sinks: files, Redis (writer, per-source sink, subscriber), the contract payload, and `SourceOutput`, one source's whole downstream."""
