"""Pipeline configuration: typed sections, loaded from YAML, overridden by flags.

Unknown or mistyped keys are rejected with the file and the key named, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError, shown
from pipeline.core.source_ids import check_source_id
from pipeline.core.yaml_loading import load_yaml_file

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pipeline.yaml"
MAX_IMGSZ = 4096
"""The largest model.imgsz (and export --imgsz): a 4096 x 4096 batch of 8 already needs about 1.6 GB of input."""
MAX_DECODE_PROCESSES = 64
"""The most processes decoding one file (each holds a decoder and shared-memory slots)."""
MAXIMA = {"model.imgsz": MAX_IMGSZ, "source.decode_processes": MAX_DECODE_PROCESSES}
"""Upper bounds of keys that would otherwise exhaust memory or processes."""


@dataclass
class ModelConfig:
    """Which model runs, where, and how its raw output is filtered."""

    weights: str | None = None
    imgsz: int | str = "auto"
    """Input size: auto (the model's own: its train_args, export sidecar or metadata, fixed input) or pixels."""
    device: str = "cpu"
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 100
    agnostic_nms: bool = True
    cpu_backend: str = "auto"
    """Runtime used for .pt weights on the CPU: auto (the fastest installed), openvino, onnx or pytorch."""
    half: str = "auto"
    """FP16 for .pt weights: auto (on CUDA), true, false."""
    compile: str = "off"
    """CUDA only: off, cudagraph (one graph per input shape) or compile (torch.compile)."""
    letterbox: str = "auto"
    """Where frames are letterboxed: auto (on the device for CUDA), cpu, device."""

    @property
    def devices(self) -> list[str]:
        """The devices of `device` (a list or comma-separated: one engine lane per device)."""
        return [part.strip() for part in self.device.split(",") if part.strip()]


@dataclass
class BatchingConfig:
    """How frames are grouped for the accelerator."""

    batch: int = 8
    queue_size: int = 64
    max_wait_ms: float = 25.0
    """serve: how long a partial batch of live frames waits for more before it runs anyway (a file's batches are
    always whole, but for its last)."""
    open_files: int = 4
    """process: files decoded at the same time (each batch holds one file's frames)."""


@dataclass
class SourceConfig:
    """How a video source is read."""

    stride: int = 1
    decode_processes: int = 0
    """Processes decoding one long file in keyframe segments (0: as the cores allow, 1: none)."""


@dataclass
class RedisConfig:
    """Where timelines are streamed; `url: null` means no Redis unless REDIS_URL is set."""

    url: str | None = None
    prefix: str = "emotion"
    maxlen: int = 1_000_000
    timeout_s: float = 5.0
    buffer_entries: int = 20_000
    """Entries held in memory while Redis is unreachable; later ones spill to disk."""
    spill_dir: str = "runs/spill"
    contract: int = 1
    """Redis contract version: 1 (`emotion:frames:cam1`) or 2 (`emotion:{cam1}:frames`: the source id is the hash
    tag, so a source's keys share one Redis Cluster slot)."""
    cluster: bool = False
    """`url` names a node of a Redis Cluster (needs contract 2)."""


@dataclass
class OutputConfig:
    """Where the file sink writes its timeline."""

    dir: str = "runs/process"
    files: bool = True
    """Write timeline.jsonl/csv per source (turn off for long-running camera feeds)."""


@dataclass
class LiveConfig:
    """How live sources (RTSP, HTTP, devices) are read, watched and reconnected."""

    transport: str = "tcp"
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    stall_timeout_s: float = 15.0
    """A live source that delivers no frame for this long has its decoder restarted."""
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    connect_attempts: int = 5
    """Failed connections before a source that was never live is declared failed."""
    keep_frames: int = 4
    """Newest frames a live source keeps waiting for inference; older ones are dropped."""
    max_width: int = 1920
    max_height: int = 1080
    """Frames larger than this are downscaled into shared memory (boxes are scaled back)."""


@dataclass
class MetricsConfig:
    """Periodic log line and Prometheus endpoint."""

    log_interval_s: float = 10.0
    port: int | None = None
    """Serve Prometheus metrics on this TCP port (off when None)."""
    host: str = "127.0.0.1"
    """Address the metrics endpoint binds to: 127.0.0.1 keeps it local; 0.0.0.0 exposes it on every interface."""


@dataclass
class SourceSpec:
    """One source of `serve`: an id, a URI and how to read it."""

    id: str = ""
    uri: str = ""
    stride: int = 1
    max_fps: float | None = None
    loop: bool = False


@dataclass
class TrackerSettings:
    """Face tracking with ultralytics' ByteTrack (its bytetrack.yaml defaults)."""

    enabled: bool = True
    track_high_thresh: float = 0.25
    track_low_thresh: float = 0.1
    new_track_thresh: float = 0.25
    track_buffer: int = 30
    """Frames a lost track is kept, so ids survive short occlusions and missed detections."""
    match_thresh: float = 0.8
    fuse_score: bool = True


@dataclass
class EventSettings:
    """Thresholds of the temporal model that turns tracked faces into events."""

    smoothing: float = 0.4
    """Weight of the newest frame in the smoothed class probabilities (1 = no smoothing)."""
    baseline_ms: float = 1000.0
    """A new track's baseline emotion settles over this long; no change or micro event before."""
    change_margin: float = 0.15
    change_min_ms: float = 300.0
    micro_min_ms: float = 40.0
    micro_max_ms: float = 500.0
    micro_min_frames: int = 2
    micro_min_score: float = 0.5
    exit_after_s: float = 1.0


@dataclass
class FleetConfig:
    """How a Ray fleet (`--cluster`) sizes its inference actors and places cameras on them."""

    cpus_per_actor: int = 4
    """CPU nodes: one inference actor per this many cores (a GPU node gets one actor per GPU)."""
    cameras_per_actor: int | None = None
    """Cameras one actor serves, as `bench --streams auto` measured on that node; unset: spread evenly."""
    lost_after_s: float = 5.0
    """A camera actor that has not answered the controller for this long is taken as lost and its cameras move."""


@dataclass
class PipelineConfig:
    """The whole pipeline configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracking: TrackerSettings = field(default_factory=TrackerSettings)
    events: EventSettings = field(default_factory=EventSettings)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    sources: list[SourceSpec] = field(default_factory=list)


CHOICES = {
    "model.cpu_backend": ("auto", "openvino", "onnx", "pytorch"),
    "model.half": ("auto", "true", "false"),
    "model.compile": ("off", "cudagraph", "compile"),
    "model.letterbox": ("auto", "cpu", "device"),
    "live.transport": ("tcp", "udp"),
    "redis.contract": (1, 2),
}
TRUE_FALSE_AUTO = {"model.half"}
"""String keys that also take YAML's true/false."""
OFF_SWITCHES = {"model.compile"}
"""String keys where YAML's unquoted `off` (read as false) means "off"."""
LISTS = {"model.device"}
WORDS = {"redis.prefix"}
"""String keys that begin key names: no spaces, line breaks or control characters."""
AUTO_INTS = {"model.imgsz"}
"""Integer keys that also take "auto" (the model says)."""
"""String keys that also take a YAML list (joined with commas)."""
POSITIVE = {
    "model.imgsz",
    "model.max_det",
    "batching.batch",
    "batching.queue_size",
    "batching.open_files",
    "source.stride",
    "redis.maxlen",
    "redis.buffer_entries",
    "live.connect_attempts",
    "live.keep_frames",
    "live.max_width",
    "live.max_height",
    "sources.stride",
    "fleet.cpus_per_actor",
    "fleet.cameras_per_actor",
    "fleet.lost_after_s",
}
PORTS = {"metrics.port"}
NON_NEGATIVE = {"batching.max_wait_ms", "source.decode_processes"}
UNIT_INTERVAL = {"model.conf", "model.iou", "events.smoothing", "events.change_margin", "events.micro_min_score",
                 "tracking.track_high_thresh", "tracking.track_low_thresh", "tracking.new_track_thresh",
                 "tracking.match_thresh"}


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read `path` (default configs/pipeline.yaml), apply dotted `overrides`, validate.

    `overrides` maps "section.key" to a value; None values are ignored, so CLI flags
    left unset keep the file's value. REDIS_URL fills `redis.url` when neither sets it.
    """
    source = Path(path) if path else DEFAULT_CONFIG
    config = PipelineConfig()
    if path or source.exists():
        _apply_mapping(config, _read_yaml(source), str(source))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, key = dotted.split(".", 1)
            _apply_mapping(config, {section: {key: value}}, "command line")
    if not config.redis.url and os.environ.get("REDIS_URL"):
        config.redis.url = os.environ["REDIS_URL"]
    check_redis_layout(config.redis)
    return config


def check_redis_layout(redis: RedisConfig) -> None:
    """ConfigError for keys Redis Cluster could not take: `redis.cluster` needs contract 2, whose prefix
    must not hold a brace (it would become the keys' hash tag)."""
    if redis.cluster and redis.contract != 2:
        raise ConfigError(f"redis.cluster: true needs redis.contract: 2 (all keys of a source in one hash slot), "
                          f"got redis.contract: {redis.contract}")
    if redis.contract == 2 and ("{" in redis.prefix or "}" in redis.prefix):
        raise ConfigError(f"redis.prefix {shown(redis.prefix)} must not hold {{ or }} with redis.contract: 2 "
                          "(the source id is the keys' hash tag)")


def _read_yaml(path: Path) -> dict:
    data = load_yaml_file(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def _apply_mapping(config: PipelineConfig, data: dict, origin: str) -> None:
    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for section_name, values in data.items():
        if section_name not in sections:
            raise ConfigError(f"{origin}: unknown section {shown(section_name)}{_suggest(section_name, sections)}")
        if section_name == "sources":
            config.sources = _sources(values, origin)
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section '{section_name}' must be a mapping")
        _apply_fields(sections[section_name], values, section_name, origin)


def _apply_fields(target: Any, values: dict, section_name: str, origin: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in values.items():
        dotted = f"{section_name}.{key}"
        if key not in fields:
            raise ConfigError(f"{origin}: unknown key {shown(dotted)}{_suggest(key, fields)}")
        setattr(target, key, _coerce(dotted, value, fields[key].type, origin))


def _sources(values: Any, origin: str) -> list[SourceSpec]:
    if not isinstance(values, list):
        raise ConfigError(f"{origin}: 'sources' must be a list of {{id, uri, ...}} mappings")
    specs: list[SourceSpec] = []
    for number, item in enumerate(values, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"{origin}: source #{number} must be a mapping with id and uri")
        spec = SourceSpec()
        _apply_fields(spec, item, "sources", origin)
        check_source_id(spec.id, f"{origin}: source #{number}")
        if not spec.uri:
            raise ConfigError(f"{origin}: source '{spec.id}' has no uri")
        if any(other.id == spec.id for other in specs):
            raise ConfigError(f"{origin}: source id '{spec.id}' is used twice")
        specs.append(spec)
    return specs


def _coerce(dotted: str, value: Any, type_name: str, origin: str) -> Any:
    optional = "None" in type_name
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{origin}: '{dotted}' must not be empty")
    base = type_name.replace("| None", "").strip()
    if dotted in AUTO_INTS:
        if value == "auto":
            return value
        base = "int"
    if dotted in TRUE_FALSE_AUTO and isinstance(value, bool):
        value = str(value).lower()
    if dotted in OFF_SWITCHES and value is False:
        value = "off"
    if dotted in LISTS and isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    try:
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif base == "float":
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
            if not math.isfinite(value):  # YAML's .inf and .nan, or 1e999: no setting means them
                raise ValueError
        elif base == "bool":
            if not isinstance(value, bool):
                raise ValueError
        elif base == "str":
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            value = str(value)
    except (TypeError, ValueError):
        hint = " (YAML reads on/off/yes/no as true/false: quote the word)" if isinstance(value, bool) else ""
        raise ConfigError(f"{origin}: '{dotted}' must be {base}, got {shown(value)}{hint}") from None
    if dotted in CHOICES and value not in CHOICES[dotted]:
        raise ConfigError(f"{origin}: '{dotted}' must be one of {', '.join(map(str, CHOICES[dotted]))}, "
                          f"got {shown(value)}")
    if dotted in POSITIVE and value < 1:
        raise ConfigError(f"{origin}: '{dotted}' must be at least 1, got {shown(value)}")
    if dotted in PORTS and not 1 <= value <= 65535:
        raise ConfigError(f"{origin}: '{dotted}' must be a port number from 1 to 65535, got {shown(value)}")
    if dotted in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{origin}: '{dotted}' must be 0 or more, got {shown(value)}")
    if dotted in MAXIMA and value > MAXIMA[dotted]:
        raise ConfigError(f"{origin}: '{dotted}' must be at most {MAXIMA[dotted]}, got {shown(value)}")
    if dotted in WORDS and (not value or any(c.isspace() or not c.isprintable() for c in value)):
        raise ConfigError(f"{origin}: '{dotted}' must be a word: no spaces, line breaks or control characters, got "
                          f"{shown(value)}")
    if dotted in UNIT_INTERVAL and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{origin}: '{dotted}' must be between 0 and 1, got {shown(value)}")
    return value


def _suggest(name: str, known: Any) -> str:
    prefixed = [k for k in known if str(name).startswith(k) or k.startswith(str(name))]
    close = prefixed or difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
