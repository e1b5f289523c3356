"""The Redis side of a `process` job: checks before anything is written, one writer, outcomes per file.

Before the engine starts, the job claims every readable file's source id (another run writing
one refuses the job), then compares each file's run record (file identity, model, settings)
with what Redis holds under its id: a re-run of the same record resumes (adding nothing when
the earlier run ended), other data under the keys refuses the job (SinkError) unless
`replace`, which deletes the sources' keys once every file has been checked. A file that
cannot be read is not claimed and gets no Redis sink: it never touches its id's data. Commands the run could not write stay
in a spill file named after the run, so that only a re-run of the same files and settings
replays them. At the end every file learns what Redis lacks of it, and its status says so.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from pipeline.core.config import PipelineConfig
from pipeline.core.contract import RedisKeys
from pipeline.core.errors import SinkError
from pipeline.core.fleet_member import FleetMember
from pipeline.core.uris import mask_uri
from pipeline.files.feed import FileJob
from pipeline.sinks.redis_replies import describe
from pipeline.sinks.redis_resume import ResumePoint, SourcePlan, clear_source, plan_source
from pipeline.sinks.redis_sink import RedisSink, RedisUnreachable, connect
from pipeline.sinks.redis_writer import RedisWriter
from pipeline.sinks.run_record import RunRecord
from pipeline.sinks.source_claims import SourceClaims, claim_ttl_s
from pipeline.sinks.source_output import SourceOutput

log = logging.getLogger(__name__)


@dataclass
class RedisRun:
    """One writer for the job, its claims, and per readable file's source id its run record and where
    it resumes."""

    writer: RedisWriter
    claims: SourceClaims
    keys: RedisKeys
    records: dict[str, RunRecord]
    resume: dict[str, ResumePoint | None]
    member: FleetMember | None = None

    def sink(self, config: PipelineConfig, job: FileJob, model_id: str) -> RedisSink | None:
        """The Redis sink of one file; None for a file that could not be read (it fails to open, alone)."""
        if job.source_id not in self.records:
            return None
        return RedisSink(self.writer, job.source_id, model_id, self.keys, config.redis.maxlen, str(job.path),
                         run=self.records[job.source_id], resume=self.resume[job.source_id],
                         node=self.member.node if self.member else None)

    def finish(self, outputs: dict[str, SourceOutput], timeout_s: float,
               stop: threading.Event | None = None) -> dict[str, str]:
        """Flush (until `timeout_s` or `stop`), record in each affected source's status what Redis lacks
        of it, close the writer, release the claims; returns the problem of each source whose entries are
        not all in Redis or may be mixed with another run's."""
        self.writer.flush(timeout_s, stop)
        problems = self._problems()
        for source_id, problem in problems.items():
            sink = outputs[source_id].redis
            if sink is not None:
                sink.incomplete(problem)
        self.writer.close(0.0 if self.writer.pending or (stop and stop.is_set()) else timeout_s)
        self.claims.release()
        return self._problems()

    def _problems(self) -> dict[str, str]:
        writer = self.writer
        waiting = writer.unwritten() if writer.pending else Counter()
        problems: dict[str, str] = {}
        accounted = 0
        for source_id in self.records:
            streams = (self.keys.frames(source_id), self.keys.events(source_id))
            rejected = sum(writer.rejected[key] for key in streams)
            unwritten = sum(waiting[key] for key in streams)
            accounted += unwritten
            said = []
            if rejected:
                first = next(writer.rejections[key] for key in streams if key in writer.rejections)
                said.append(f"Redis rejected {rejected} of its entries ({first}); they are kept in "
                            f"{writer.rejected_file.path}")
            if unwritten:
                said.append(f"Redis at {mask_uri(writer.url)} {writer.last_problem}: {unwritten} of its entries "
                            f"were not written; they are kept in {writer.buffer.path} and written by a re-run "
                            "of the same files")
            if source_id in self.claims.lost:
                said.append(f"{self.claims.lost[source_id]} took its claim while Redis was unreachable; "
                            "its entries may be mixed with that run's")
            if said:
                problems[source_id] = "; ".join(said)
        others = sum(waiting.values()) - accounted + writer.rejected[self.keys.sources]
        if others:
            for source_id in self.records:
                problems.setdefault(source_id, f"Redis at {mask_uri(writer.url)} did not take {others} status "
                                               f"updates or messages ({writer.last_problem or 'rejected'})")
        return problems


def open_redis_run(config: PipelineConfig, jobs: list[FileJob], model_id: str, settings: dict[str, Any],
                   spill_dir: Path, replace: bool, member: FleetMember | None = None) -> RedisRun:
    """Claim and check every readable file's source id, clear them when `replace` (only once every one may
    go ahead), then start the writer. Raises ConfigError for a malformed URL, SinkError when Redis refuses
    the client, another run is writing one of the ids, or Redis holds other data under a file's keys
    (unless `replace`), RedisUnreachable when it does not answer. A fleet `member` takes over its job's claims."""
    keys = RedisKeys.of(config.redis)
    records = _readable_records(jobs, model_id, settings)
    client = connect(config.redis.url, config.redis.timeout_s, config.redis.cluster)
    claims = SourceClaims(client, keys, "process", claim_ttl_s(config.redis.timeout_s),
                          member.job if member else "")
    try:
        plans = _claim_and_plan(client, claims, keys, records, replace)
    except redis.RedisError as exc:
        claims.release()
        if isinstance(exc, redis.ResponseError):
            raise SinkError(f"Redis at {mask_uri(config.redis.url)} refused the checks before the run: "
                            f"{describe(exc)}") from None
        raise RedisUnreachable(f"cannot reach Redis at {mask_uri(config.redis.url)}: {exc}") from None
    except BaseException:
        claims.release()
        raise
    claims.keep()
    spill = _spill_path(spill_dir, records)
    if replace:
        spill.unlink(missing_ok=True)  # replayed after the streams were replaced, it would mix the two runs
    _warn_about_other_spills(spill)
    writer = RedisWriter(config.redis.url, timeout_s=config.redis.timeout_s,
                         buffer_entries=config.redis.buffer_entries, spill_path=spill, cluster=config.redis.cluster)
    return RedisRun(writer, claims, keys, records, {plan.source_id: plan.resume for plan in plans}, member)


def _claim_and_plan(client: redis.Redis, claims: SourceClaims, keys: RedisKeys, records: dict[str, RunRecord],
                    replace: bool) -> list[SourcePlan]:
    """Claim every id, plan every source, and only then clear those `replace` asks for."""
    for source_id in records:
        claims.claim(source_id)
    plans = [plan_source(client, keys, source_id, record, replace) for source_id, record in records.items()]
    unsure = sorted(plan.source_id for plan in plans if plan.clear and plan.source_id in claims.provisional)
    if unsure:  # deleting without a stored claim could delete a run that starts meanwhile
        raise SinkError(f"cannot replace {', '.join(unsure)}: Redis refuses writes for now, so this run could not "
                        "claim it; try again when Redis takes writes")
    for plan in plans:
        if plan.clear:
            clear_source(client, keys, plan.source_id)
    return plans


def _readable_records(jobs: list[FileJob], model_id: str, settings: dict[str, Any]) -> dict[str, RunRecord]:
    """The run record of each file that can be read; the others fail to open, with the reason."""
    records: dict[str, RunRecord] = {}
    for job in jobs:
        try:
            records[job.source_id] = RunRecord.for_file(job.path, model_id, settings)
        except OSError:
            continue
    return records


def _spill_path(folder: Path, records: dict[str, RunRecord]) -> Path:
    """`redis-spill-<run>.jsonl`: named after the run records, so only the same run replays it."""
    ids = sorted(f"{source_id}={record.id}" for source_id, record in records.items())
    name = next(iter(records.values())).id if len(ids) == 1 else \
        hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    return folder / f"redis-spill-{name}.jsonl"


def _warn_about_other_spills(spill: Path) -> None:
    others = [path for path in spill.parent.glob("redis-spill*.jsonl")
              if path != spill and not path.stem.endswith("-rejected")]
    if others:
        log.warning("%s holds commands earlier runs could not write to Redis (%s); only a re-run of the same "
                    "files and settings replays them", spill.parent, ", ".join(path.name for path in others))
