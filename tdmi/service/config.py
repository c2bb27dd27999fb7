"""Service settings: environment variables ``TDMI_*``, an optional YAML file, then the CLI."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import socket
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from tdmi.protocol.overlay import DEFAULT_SCORE_THRESHOLD
from tdmi.protocol.stream import MAX_ACK_WINDOW
from tdmi.service.logs import redact_url

__all__ = ["DEMO_CHECKPOINT", "RENAMED", "SECTIONS", "Settings"]

log = logging.getLogger("tdmi.service")

# the demonstration model trained on synthetic figures (see README): the default model
DEMO_CHECKPOINT = Path(str(resources.files("tdmi.model") / "weights" / "tdmi_tiny_synth.pt"))


def _xdg_home(variable: str, fallback: str) -> Path:
    """An XDG base directory: ``$variable`` when it is absolute (XDG ignores relative ones), else
    ``~/fallback``: one place per user, whatever the working directory."""
    base = Path(os.environ.get(variable, ""))
    return base if base.is_absolute() else Path.home() / fallback


def _default_weights_dir() -> Path:
    """``$XDG_CACHE_HOME/tdmi/weights``, or ``~/.cache/tdmi/weights``."""
    return _xdg_home("XDG_CACHE_HOME", ".cache") / "tdmi" / "weights"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/tdmi``, or ``~/.local/share/tdmi``: not a folder wherever one starts."""
    return _xdg_home("XDG_DATA_HOME", ".local/share") / "tdmi"


def _default_models() -> list[str]:
    return [f"tdmi-tiny={DEMO_CHECKPOINT}"] if DEMO_CHECKPOINT.exists() else ["tdmi-tiny"]


# the sections of the settings, each named by its first field (``tdmi serve --help`` groups so)
SECTIONS = {
    "host": "where and what",
    "max_batch": "batching",
    "detector": "boxes and tracking",
    "smoothing": "keypoint smoothing along tracks (live streams and video jobs; a stream's config overrides)",
    "lookahead": "live streams",
    "max_upload_bytes": "video jobs",
    "max_sources": "camera sources: streams the server pulls (pulling a URL is an SSRF door, so who may add "
    "one and what it may reach are settings)",
    "redis_url": "scale-out over Redis (README, Deployment); without redis_url the service runs embedded",
    "weights_dir": "published weights (`tdmi weights`); the service only reads what the command pulled",
    "max_url_bytes": "HTTP edge: every request's size and time is bounded before the application reads it",
    "api_keys": "safety",
}

# where cameras live: the private IPv4 ranges (RFC 1918) and IPv6 unique local addresses
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")

_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*")

# renamed settings, old name -> new name: the old TDMI_ variable is still read, with a warning,
# until the release after the rename (0.2)
RENAMED = {"heartbeat_s": "ws_ping_interval_s", "heartbeat_interval_s": "node_heartbeat_s"}


class _RenamedVariables(PydanticBaseSettingsSource):
    """The old ``TDMI_*`` names of renamed settings among one environment source's variables.

    Ranked just below that source, so the new name wins where both are set; each old name read
    logs a warning naming the new one.
    """

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str | None]):
        super().__init__(settings_cls)
        self.variables = variables  # lower-cased names: the settings' names are case-insensitive

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # not asked: __call__ answers for all fields at once

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for old, new in RENAMED.items():
            value = self.variables.get(f"tdmi_{old}")
            if value is not None:
                log.warning("TDMI_%s is deprecated: use TDMI_%s", old.upper(), new.upper())
                found[new] = value
        return found


class Settings(BaseSettings):
    """Every knob of the service, declared once: the ``TDMI_<NAME>`` variables, the keys of the YAML
    file ``TDMI_SETTINGS_FILE`` may name, and the flags of ``tdmi serve`` and ``tdmi worker``
    (``tdmi.service.settings_flags``) are made from these fields. Built once, where a command or an app
    starts, and passed down."""

    # errors never echo their input: it may be an API key
    model_config = SettingsConfigDict(
        env_prefix="TDMI_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="HTTP port; unset: base_port for tdmi serve, base_port + 1 + N for a worker on device :N",
    )
    base_port: int = Field(
        default=8000, ge=1, le=65535, description="ports of the nodes on one host count from here"
    )
    device: str = Field(default="cpu", description="cpu, cuda or cuda:N")
    models: list[str] = Field(
        default_factory=_default_models,
        description="models to load, each NAME or NAME=CHECKPOINT; NAME may be a preset or a pulled "
        "catalogue entry (`tdmi weights list`), CHECKPOINT a file path or a pulled catalogue entry",
    )
    backend: Literal["auto", "torch", "torchscript", "onnxruntime"] = Field(
        default="auto",
        description="the runtime of the models; auto: onnxruntime on a CPU in fp32 (the fastest there "
        "end to end, BENCHMARKS.md; the ONNX file is exported once at first start and cached), torch "
        "otherwise and wherever a setting needs it (feature_reuse, torch_compile, cuda_graphs)",
    )
    precision: Literal["fp32", "fp16", "bf16"] = Field(default="fp32", description="fp16/bf16 on a GPU only")
    cpu_threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads of the model's operators (torch intra-op, ONNX Runtime "
        "intra_op_num_threads); unset: OMP_NUM_THREADS if set, else the cores this process may run "
        "on (its CPU affinity)",
    )
    ort_memory_arena: bool = Field(
        default=True,
        description="ONNX Runtime's CPU memory arena (backend onnxruntime on the CPU): keeps the "
        "batches' buffers for reuse (17-40 percent more throughput on a 2-core CPU) and never gives them "
        "back (about 150 MiB more resident, growing with the batch shapes it meets); off for the "
        "smallest, flattest memory",
    )
    ort_spinning: bool = Field(
        default=False,
        description="ONNX Runtime's threads spin between operators instead of sleeping (backend "
        "onnxruntime): off by default, since on a small CPU the spinning takes the cores the service's "
        "crops, JPEG decoding and detector need (7 percent more throughput with it off, 2-core CPU)",
    )
    torch_compile: bool = Field(
        default=False,
        description="torch.compile the network (backend torch only): one static graph per batch bucket, "
        "compiled at start-up (minutes on a CPU)",
    )
    cuda_graphs: bool = Field(
        default=False,
        description="capture each batch bucket's forward pass as a CUDA graph at start-up and replay it "
        "(backend torch on a GPU only): no per-kernel launch cost",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="job database, uploads, results, caches ($XDG_DATA_HOME/tdmi or ~/.local/share/tdmi)",
    )
    log_format: Literal["text", "json"] = Field(default="text", description="json: one object per line")
    log_level: Literal["debug", "info", "warning"] = Field(
        default="info",
        description="the service's and its HTTP server's log lines from this level up; other libraries "
        "(ONNX exporter, PIL, httpx, ...) log warnings and errors only, unless debug",
    )

    max_batch: int = Field(default=16, ge=1, description="clips (persons) per batch")
    max_delay_ms: float = Field(
        default=5.0, ge=0, description="how long the oldest frame may wait for a batch"
    )
    queue_frames: int = Field(default=64, ge=1, description="frames the batcher holds across all streams")
    latency_budget_ms: float | None = Field(
        default=100.0,
        gt=0,
        description="a live frame's time from entering the batch queue to its keypoints: a batch "
        "carrying live frames closes when one more frame would make its oldest one miss this, given "
        "the model's time per batch size (measured as the service runs); when even that frame alone "
        "cannot make it (a backlog), the batch fills max_batch to catch up; batches of video-job "
        "frames only fill max_batch; unset: live frames batch like a job's",
    )
    heap_trim_s: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="every this many seconds in which a batch ran, give the C heap's free memory back "
        "to the OS (glibc malloc_trim, about 10 ms); 0: never",
    )
    feature_reuse: bool = Field(
        default=False,
        description="crop each track with a box kept while its person stays inside it and compute each "
        "frame's backbone features once for the 2d+1 clips that read them (backend torch only)",
    )
    reuse_drift_iou: float = Field(
        default=0.85,
        gt=0,
        le=1,
        description="feature reuse: re-crop a track when its box's IoU with the kept box falls below this",
    )

    detector: str | None = Field(
        default=None,
        description="hog (upright pedestrians, no file), none, onnx:/path/model.onnx (layout detected), "
        "onnx-LAYOUT:/path/model.onnx (yolov5, yolov8, end2end, yolox, mmdeploy, mmdeploy-rtmdet) or a "
        "pulled catalogue detector; unset: the first pulled catalogue detector, else hog",
    )
    detect_every: int = Field(default=5, ge=1, description="detector cadence; boxes propagate in between")
    job_box_lag: int = Field(
        default=1,
        ge=1,
        le=8,
        description="video jobs: frame t's boxes follow frame t-k's keypoints (a fixed rule, so results "
        "never depend on timing); larger k keeps k frames of a job in flight, with older boxes",
    )
    track_match_threshold: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="least similarity of a box to a track to continue it (IoU with the track's "
        "motion-carried box, half and half with the share of its confident keypoints inside the box)",
    )
    track_max_age: int = Field(
        default=30, ge=0, description="frames a lost track is kept for a detection to find it again"
    )
    track_max_coast: int = Field(
        default=5,
        ge=0,
        le=300,
        description="frames a track's box goes on by its motion alone while the pose model is unsure "
        "of the person, before the track is lost",
    )

    smoothing: Literal["none", "one_euro"] = Field(
        default="none",
        description="one_euro: an adaptive low-pass filter per track and joint (steadier, a little lag); "
        "the tracker still follows the raw keypoints",
    )
    smoothing_min_cutoff: float = Field(
        default=8.0, gt=0, le=100, description="One Euro cutoff (Hz) of a still joint: lower is steadier"
    )
    smoothing_beta: float = Field(
        default=0.3,
        ge=0,
        le=10,
        description="One Euro speed coefficient (1/pixel): higher follows fast motion with less lag",
    )

    lookahead: int | None = Field(default=None, ge=0, description="live default (None: the model's d)")
    staleness_ms: float = Field(default=1000.0, gt=0, description="live frames older than this are dropped")
    ack_window: int = Field(
        default=16, ge=1, le=MAX_ACK_WINDOW, description="unacknowledged results per stream"
    )
    ack_timeout_s: float = Field(default=30.0, gt=0, description="close a stream whose window stays full")
    ws_ping_interval_s: float = Field(
        default=20.0,
        gt=0,
        description="WebSocket keep-alive: a ping this often; a peer that answers none within as "
        "long is dropped (1011)",
    )
    ws_compression: bool = Field(
        default=False,
        description="offer permessage-deflate on WebSockets. Off: each peer has its own compressor, so "
        "a result (a few KB) is compressed again for every viewer of a source and every stream, "
        "about 0.3-0.5 ms of CPU each, while JPEG frames do not compress; on saves about half the "
        "bytes of results, for viewers on slow links",
    )
    require_config: bool = Field(default=False, description="reject frames sent before a config message")
    max_message_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="a larger WebSocket message closes its stream (1009)"
    )
    max_frame_pixels: int = Field(default=3840 * 2160, ge=1, description="larger live frames are refused")
    max_fps: float = Field(default=60.0, gt=0, description="live frames per second per stream")
    max_streams: int = Field(default=32, ge=1, description="concurrent live streams (more: closed 4029)")
    ws_idle_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="close a live stream (4000) from which no message arrived for this long",
    )

    max_upload_bytes: int = Field(default=1024**3, ge=1, description="larger uploads are refused (413)")
    max_video_seconds: float = Field(default=3600.0, gt=0, description="longer videos are refused")
    max_video_pixels: int = Field(default=3840 * 2160, ge=1, description="per frame, checked on every frame")
    max_video_frames: int = Field(default=216_000, ge=1, description="frames per video (an hour at 60 fps)")
    max_running_jobs: int = Field(default=2, ge=1, description="video jobs run at once on a node")
    max_queued_jobs: int = Field(default=100, ge=1, description="waiting video jobs; more are refused (429)")
    wait_max_frames: int = Field(default=600, ge=1, description="?wait=true only for videos this short")
    keep_uploads: bool = Field(default=False, description="keep a job's uploaded video after the job ended")
    job_retention_hours: float = Field(
        default=72.0,
        ge=0,
        description="finished jobs are deleted with their files this long after (0: never)",
    )
    job_sweep_interval_s: float = Field(default=600.0, gt=0, description="how often old jobs are looked for")
    leftover_grace_s: float = Field(
        default=3600.0,
        ge=0,
        description="the retention sweep also removes files no job reads (uploads of lost jobs, "
        "partial files of killed runs) once untouched this long",
    )
    max_corrupt_frames: int = Field(
        default=25,
        ge=0,
        description="video jobs: frames that fail to decode are skipped and counted; one more than "
        "this fails the job",
    )
    min_free_bytes: int = Field(
        default=64 * 1024**2,
        ge=0,
        description="uploads are refused (507) when they would leave less free disk",
    )
    overlay_score_threshold: float = Field(
        default=DEFAULT_SCORE_THRESHOLD,
        ge=0,
        le=1,
        description="overlay videos (render=true) leave out joints scoring below this",
    )

    max_sources: int = Field(default=8, ge=0, description="camera sources at once on this service; 0: none")
    source_keys: Literal["admin", "all"] = Field(
        default="admin",
        description="who may add a camera source: admin: the admin API keys only; all: every accepted key",
    )
    source_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default=list(PRIVATE_NETWORKS),
        description="networks (CIDRs) and host names a camera source may reach, comma-separated; every "
        "address a source's host resolves to must be in one, a listed name is allowed by name. Default: "
        "the private ranges, where cameras live; loopback (this host's own services), link-local "
        "(169.254.0.0/16 holds cloud metadata services) and public addresses are refused unless listed",
    )
    source_allow_files: bool = Field(
        default=False, description="camera sources may also be local files and devices (file:// or a path)"
    )
    source_connect_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="a camera must connect and send its stream's description within this; also the "
        "timeout of each socket operation",
    )
    source_stall_s: float = Field(
        default=3.0,
        gt=0,
        le=120,
        description="a camera source that delivers no frame for this long is reconnected",
    )
    source_results_max_s: float = Field(
        default=3600.0,
        gt=0,
        description="GET /v1/sources/ID/results answers a range of recorded results (record: true) at "
        "most this long (422 beyond)",
    )
    source_results_max_frames: int = Field(
        default=18_000,
        ge=1,
        description="GET /v1/sources/ID/results answers at most this many frames (422 beyond: ask for a "
        "shorter range)",
    )

    redis_url: str | None = Field(default=None, description="redis://host:6379/0: run as a cluster node")
    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="a worker's name in the cluster (default host-pid)",
    )
    node_heartbeat_s: float = Field(
        default=1.0, gt=0, description="how often each node of a cluster tells Redis it is alive"
    )
    node_ttl_s: float = Field(default=5.0, gt=0, description="a node silent this long is taken as dead")
    job_claim_idle_s: float = Field(
        default=30.0, gt=0, description="a job whose worker stopped renewing it this long is run again"
    )
    job_max_attempts: int = Field(
        default=3, ge=1, description="runs of a job (crashed ones included) before it fails for good"
    )
    job_max_retries: int = Field(
        default=20,
        ge=0,
        description="transient server faults (descriptors, memory or disk exhausted, Redis away) a "
        "job is retried after, each after a wait of 1 s doubling to 60 s; they use no attempt",
    )
    loop_stall_s: float = Field(
        default=30.0,
        gt=0,
        description="a node whose background loop (job consumer, heartbeat, sweep) fails this long "
        "is not ready until the loop runs again",
    )

    weights_dir: Path = Field(
        default_factory=_default_weights_dir, description="cache of pulled catalogue files"
    )
    weights_mirror: str | None = Field(
        default=None,
        description="base URL that replaces each publisher's scheme and host (air-gapped sites)",
    )
    weights_catalogue: Path | None = Field(
        default=None, description="a JSON file of extra catalogue entries (same shape as the shipped one)"
    )

    max_url_bytes: int = Field(
        default=8192, ge=256, description="request target (path and query) longer than this: 414"
    )
    max_header_bytes: int = Field(
        default=16384, ge=1024, description="all request headers together longer than this: 431"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="a connection must send a whole request head within this"
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="a request body silent for this long is answered 408"
    )
    max_connections: int = Field(
        default=512, ge=1, description="open connections beyond this are answered 503"
    )

    api_keys: list[SecretStr] = Field(default_factory=list, description="accepted API keys (empty: none)")
    admin_api_keys: list[SecretStr] = Field(
        default_factory=list, description="keys that are accepted too and see every key's jobs"
    )
    insecure: bool = Field(default=False, description="allow listening beyond loopback without API keys")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="web origins (scheme://host[:port]) besides the service's own that may open "
        "WebSockets and send state-changing requests; '*' allows any",
    )
    allowed_hosts: list[str] | None = Field(
        default=None,
        description="Host header values accepted (names, optionally with :port; '*' any); unset: "
        "the loopback names when bound to loopback, any host otherwise",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_any_case(cls, level: Any) -> Any:
        """TDMI_LOG_LEVEL=DEBUG as well as debug: the names are written both ways."""
        return level.lower() if isinstance(level, str) else level

    @field_validator("source_allowed_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """TDMI_SOURCE_ALLOWED_NETWORKS=10.0.0.0/8,cam.local as well as a JSON list; a flag's
        value may hold commas too."""
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else [value]
        if isinstance(value, list):
            value = [part for item in value for part in str(item).split(",")]
        return value

    @field_validator("source_allowed_networks")
    @classmethod
    def _networks_or_names(cls, entries: list[str]) -> list[str]:
        """Each entry a network (an address is a network of one) or a host name, found wrong at start-up."""
        cleaned = []
        for entry in (e.strip().lower().rstrip(".") for e in entries):
            if not entry:
                continue
            try:
                cleaned.append(str(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                if not _HOST_NAME.fullmatch(entry) or entry.replace(".", "").isdigit():
                    raise ValueError(f"{entry!r} is neither a network (CIDR) nor a host name") from None
                cleaned.append(entry)
        return cleaned

    @field_validator("api_keys", "admin_api_keys")
    @classmethod
    def _keys_not_blank(cls, keys: list[SecretStr]) -> list[SecretStr]:
        """An empty key would let through any request that presents an empty one; refuse it at start-up."""
        for position, key in enumerate(keys):
            if not key.get_secret_value().strip():
                raise ValueError(f"API key {position + 1} of {len(keys)} is empty")
        return [SecretStr(key.get_secret_value().strip()) for key in keys]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings]
        for environment in (env_settings, dotenv_settings):  # each followed by its renamed names
            assert isinstance(environment, EnvSettingsSource)  # DotEnvSettingsSource is one too
            sources += [environment, _RenamedVariables(settings_cls, environment.env_vars)]
        settings_file = os.environ.get("TDMI_SETTINGS_FILE")
        if settings_file:
            if not Path(settings_file).is_file():
                raise FileNotFoundError(f"TDMI_SETTINGS_FILE {settings_file}: no such file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=settings_file))
        return (*sources, file_secret_settings)

    @property
    def model_backend(self) -> Literal["torch", "torchscript", "onnxruntime"]:
        """The runtime ``backend`` names, with ``auto`` decided: ONNX Runtime where it is the fastest
        measured (a CPU, fp32) and nothing asks for torch; torch otherwise."""
        if self.backend != "auto":
            return self.backend
        wants_torch = self.feature_reuse or self.torch_compile or self.cuda_graphs
        on_cpu_fp32 = self.device == "cpu" and self.precision == "fp32"
        return "onnxruntime" if on_cpu_fp32 and not wants_torch else "torch"

    def public(self) -> dict[str, Any]:
        """The settings as printed at start-up: API keys are counted, never shown."""
        shown = self.model_dump(exclude={"api_keys", "admin_api_keys"}, mode="json")
        shown["api_keys"] = f"{len(self.api_keys)} configured"
        shown["admin_api_keys"] = f"{len(self.admin_api_keys)} configured"
        if self.redis_url:
            shown["redis_url"] = redact_url(self.redis_url)
        return shown
