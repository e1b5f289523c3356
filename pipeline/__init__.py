"""emotion-stream runtime: sources, batched emotion detection, tracking-free timelines and sinks."""

__version__ = "0.1.0"
