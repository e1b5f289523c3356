"""What a run knows when it is one part of a fleet job (see `pipeline.fleet`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FleetMember:
    """A `process` or `serve` run inside an inference actor of a fleet job.

    `job` is the job's token: a source id claimed by one of the job's actors may be taken over by another
    of its actors (the controller moved the source after the first actor was lost). `node` names the Ray
    node the run is on; it appears in the source's status in Redis.
    """

    job: str
    node: str
