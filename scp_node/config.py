"""Typed settings for the node.

The defaults below *are* the embedded default configuration: ``scp-node serve`` with no file works
as is. A TOML file (``--config FILE`` or ``SCP_NODE_CONFIG``) overrides them, and every key can be
overridden again by an environment variable ``SCP_NODE_<SECTION>__<KEY>`` (for example
``SCP_NODE_DICOM__PORT=104``). ``docs/configuration.md`` documents every key."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "SCP_NODE_"


class Section(BaseModel):
    """A config section: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


def _ae_title(value: str) -> str:
    """An AE title is 1-16 characters of the default repertoire, no backslash (PS3.5 §6.2, AE)."""
    stripped = value.strip()
    if not 1 <= len(stripped) <= 16 or "\\" in stripped or not stripped.isprintable():
        raise ValueError(f"invalid AE title {value!r}: 1-16 printable characters, no backslash")
    return stripped


class TlsSettings(Section):
    """DICOM TLS (PS3.15 Annex B.9): server certificate and optional client verification."""

    enabled: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = Field(
        None, description="CA bundle; when set, clients must present a cert"
    )


class DicomSettings(Section):
    """The DICOM upper-layer listener (C-ECHO, C-STORE, Storage Commitment)."""

    ae_title: str = "LSTV_NODE"
    bind_host: str = "127.0.0.1"
    port: int = 11112
    allowed_calling_aes: list[str] = Field(default_factory=list)
    check_called_ae: bool = True
    max_associations: int = 10
    maximum_pdu_size: int = Field(
        131072,
        ge=4096,
        le=2**24,
        description="maximum PDU length the node announces and receives, bytes (PS3.8 D.1); "
        "a longer P-DATA-TF is answered with A-ABORT before it is read. 128 KiB: as fast as "
        "unlimited with DCMTK storescu (docs/performance.md)",
    )
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 60.0
    network_timeout_s: float = 120.0
    association_request_timeout_s: float = Field(
        5.0,
        gt=0,
        description="seconds a new connection has to complete its TLS handshake and "
        "A-ASSOCIATE-RQ; it is dropped (and its address logged) otherwise",
    )
    max_association_request_bytes: int = Field(
        262144,
        ge=1024,
        description="largest A-ASSOCIATE-RQ (and any other non-data PDU) accepted, bytes; "
        "longer ones are answered with A-ABORT",
    )
    max_pending_per_peer: int = Field(
        8,
        ge=1,
        description="connections from one address that may be waiting for their "
        "A-ASSOCIATE-RQ; a newer one evicts the oldest",
    )
    max_pending_connections: int = Field(
        128,
        ge=1,
        description="connections in all that may be waiting for their A-ASSOCIATE-RQ; a newer "
        "one evicts the oldest",
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="receiving processes sharing the DICOM port (SO_REUSEPORT), each with its "
        "own pynetdicom AE, so that several associations use several cores; 1 = everything in "
        "the `serve` process (docs/ingest.md)",
    )
    syntax_policy: Literal["compressed", "uncompressed"] = "compressed"
    tls: TlsSettings = Field(default_factory=TlsSettings)

    @field_validator("ae_title")
    @classmethod
    def _check_ae(cls, value: str) -> str:
        return _ae_title(value)

    @field_validator("allowed_calling_aes")
    @classmethod
    def _check_allowed(cls, values: list[str]) -> list[str]:
        return [_ae_title(v) for v in values]


class StorageSettings(Section):
    """Where accepted instances and the SQLite index live."""

    data_dir: Path = Path("var")
    min_free_mb: int = 512
    fsync: bool = True
    max_instance_mb: int = Field(
        256,
        ge=1,
        description="largest instance accepted, MiB, after inflation for the Deflated syntax; "
        "larger ones are refused with 0xA700 (DIMSE) or a failed part 0xA700 (STOW-RS)",
    )
    max_inflate_ratio: float = Field(
        200.0,
        ge=0,
        description="a deflated data set may inflate to at most this many times its size once "
        "past 16 MiB (0xA700 beyond); 0 = no ratio limit",
    )
    journal_mb: int = Field(
        32,
        ge=0,
        description="size of each receiving process's intake journal (write-ahead log, "
        "<data_dir>/journal/), MiB: an instance is made durable there with one flush before "
        "Success and its spool file flushed in the background; instances larger than a quarter "
        "of it are written to the spool directly; 0 = no journal (file and directory fsync "
        "before each Success). Not used when fsync is false",
    )
    retention_hours: float = Field(
        default=0.0,
        description="delete received instances of studies finished (delivered, reported, not "
        "applicable, failed, delivery failed) more than this many hours ago; 0 keeps everything "
        "(default)",
    )

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.sqlite3"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"


class HttpSettings(Section):
    """The HTTP server: DICOMweb (STOW/QIDO/WADO) plus /healthz, /readyz, /metrics."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(
        8043,
        description="DICOMweb, probes and metrics (not 8042: Orthanc's default, often next door)",
    )
    root: str = "/dicom-web"
    auth: Literal["token", "none"] = "token"
    token: SecretStr | None = None
    max_request_mb: int = 2048
    max_parts: int = 5000
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="seconds a connection has to send a complete request line and headers; "
        "closed (and logged) otherwise",
    )
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None


class ConsoleSettings(Section):
    """The operator console at ``/console`` on the HTTP server (docs/operations.md)."""

    enabled: bool = Field(True, description="serve the operator console at `/console`")
    password: SecretStr | None = Field(
        None,
        description="console sign-in password; the DICOMweb `http.token` signs in too; with "
        "neither set the console is locked",
    )
    show_patient: bool = Field(
        False,
        description="show patient name and ID on a study's page (never in lists, URLs or logs); "
        "false: UIDs and accession numbers only",
    )
    session_hours: float = Field(8.0, gt=0, description="a sign-in lasts this long")
    refresh_s: int = Field(
        15, ge=0, description="live refresh of the lists and charts, seconds (needs JS); 0 = off"
    )


class ModelSettings(Section):
    """The spine-level localizer and the LSTV screen."""

    weights: Path | None = Field(
        None, description="checkpoint; empty = the packaged reference weights"
    )
    device: str = "auto"
    mc_samples: int = 8
    cpu_threads: int = 0
    decode_threads: int = Field(
        0,
        ge=0,
        description="threads decoding the analysed slices at once (the decoders release the "
        "GIL); 0 = one per CPU core",
    )
    max_batch: int = 64
    lstv_threshold: float | None = Field(
        None,
        description="LSTV score threshold; overrides `calibration` and the weights' own value; "
        "empty = not overridden",
    )
    calibration: Path | None = Field(
        None,
        description="site calibration file written by `scp-node model calibrate --normals` "
        "(its threshold is used unless `lstv_threshold` is set; refused when made for other "
        "weights); empty = the threshold stored in the weights",
    )
    review_margin: float = Field(
        0.1, description="needs review when |score - threshold| <= this (score units)"
    )
    context_slices: int = Field(
        3,
        description="sagittal slices analysed around the detected mid-sagittal slice (about 4 mm "
        "apart: every n-th partition of a thin-slice 3-D series); like mc_samples, the threshold "
        "holds only for the value it was chosen with (the weights': 3)",
    )
    amp: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")

    @field_validator("calibration", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


class SeriesRules(Section):
    """How the sagittal T2 series is chosen among a study's series."""

    description_include: list[str] = Field(default_factory=lambda: ["t2", "T2"])
    description_exclude: list[str] = Field(
        default_factory=lambda: ["stir", "STIR", "tirm", "TIRM", "t1", "T1"]
    )
    # whole words (split at anything not a letter or digit) of a fat-suppressed or Dixon T2:
    # chosen only when no plain T2 is there (the localizer reads plain T2)
    description_deprefer: list[str] = Field(
        default_factory=lambda: ["fs", "fatsat", "spair", "spir", "dixon", "water", "fat", "opp"]
    )
    # whole words of a localizer's (scout's) name; Image Type LOCALIZER says it too: never read
    localizer_words: list[str] = Field(
        default_factory=lambda: [
            "localizer",
            "localiser",
            "loc",
            "scout",
            "survey",
            "smartsurvey",
            "tripilot",
            "3pl",
        ]
    )
    max_normal_deviation_deg: float = 20.0
    min_slices: int = 3


class ReportSettings(Section):
    """The DICOM SR (TID 1500) the node produces, and the optional Secondary Capture."""

    series_number: int = 9901
    series_description: str = "AI LSTV screen (research, not for clinical use)"
    sc_series_number: int = 9902
    sc_series_description: str = "AI LSTV screen overlay (research, not for clinical use)"
    secondary_capture: bool = True
    institution_name: str = ""
    device_name: str = "scp-node"
    manufacturer: str = "scp-node project"


class Destination(Section):
    """Where results go: a DIMSE Storage SCP or a STOW-RS endpoint."""

    kind: Literal["dimse", "stow"] = "dimse"
    ae_title: str = "PACS"
    host: str = "127.0.0.1"
    port: int = 4242
    tls: TlsSettings = Field(default_factory=TlsSettings)
    url: str = ""
    token: SecretStr | None = None
    calling_ae: str = Field("", description="our AE title towards it; empty = [dicom] ae_title")
    timeout_s: float = Field(30.0, description="connect/ACSE/DIMSE/HTTP timeout per attempt")


class DeliverySettings(Section):
    """Outbox delivery of results (exponential backoff with jitter, then dead letter)."""

    destinations: dict[str, Destination] = Field(default_factory=dict)
    default_destinations: list[str] = Field(default_factory=list)
    reply_to_sender: dict[str, str] = Field(default_factory=dict)
    max_attempts: int = 8
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 300.0
    poll_interval_s: float = 1.0
    batch_size: int = Field(32, description="rows sent per destination per pass (one association)")
    mode: Literal["send", "shadow"] = Field(
        "send",
        description="`send`: results go to their destinations; `shadow`: results are computed, "
        "written and kept (outbox rows `held`, job state `shadow`) but nothing is sent",
    )


class PipelineSettings(Section):
    """Study completion and the job queue."""

    enabled: bool = True
    quiet_seconds: float = 10.0
    max_wait_seconds: float = 600.0
    queue_size: int = 512
    poll_interval_s: float = 0.5


class ClusterSettings(Section):
    """Scale-out on Celery + RabbitMQ: ingest nodes and model workers (docs/deployment.md).

    An ingest node publishes one analysis task per complete study; ``scp-node worker`` processes
    run the model and send the result back."""

    role: Literal["all", "ingest"] = Field(
        "all",
        description="`all`: one process does everything (the default, no broker); `ingest`: "
        "no model here, complete studies go to the broker for `scp-node worker` (needs "
        "`broker_url`; `scp-node serve --role ingest` sets it too)",
    )
    broker_url: SecretStr | None = Field(
        None,
        description="AMQP URL of the RabbitMQ broker, e.g. `amqp://user:pass@mq:5672/scp` "
        '(`amqps://` for TLS); used by `role = "ingest"` and by `scp-node worker`',
    )
    broker_ca_file: Path | None = Field(
        None, description="CA bundle that verifies the broker's TLS certificate (`amqps://`)"
    )
    broker_cert_file: Path | None = Field(
        None, description="client certificate presented to the broker (`amqps://`, optional)"
    )
    broker_key_file: Path | None = Field(None, description="private key of `broker_cert_file`")
    queue: str = Field("scp_node.analysis", description="durable queue of analysis tasks")
    node_id: str = Field(
        "",
        description="this ingest node's name in the cluster (its result queue is "
        "`scp_node.results.<node_id>`); empty = `<hostname>-<http port>`; keep it stable",
    )
    advertise_url: str = Field(
        "",
        description="DICOMweb root URL at which workers reach this ingest node; empty = "
        "built from [http] host, port and root",
    )
    dicomweb_token: SecretStr | None = Field(
        None,
        description="worker: bearer token for the ingest nodes' DICOMweb; empty = [http] token",
    )
    dicomweb_ca_file: Path | None = Field(
        None, description="worker: CA bundle for ingest nodes served over HTTPS; empty = system"
    )
    fetch_timeout_s: float = Field(60.0, gt=0, description="worker: timeout per DICOMweb request")
    fetch_retries: int = Field(
        5,
        ge=0,
        description="worker: retries (exponential backoff) when an ingest node cannot be "
        "reached; then the study fails visibly (job `failed` with the reason)",
    )
    fetch_backoff_s: float = Field(
        2.0, ge=0, description="worker: first retry delay, doubled per retry"
    )
    max_queue_depth: int = Field(
        256,
        ge=1,
        description="ingest: tasks waiting in the broker queue (all ingest nodes) at which new "
        "studies are refused (0xA700 / 503), as [pipeline] queue_size does locally",
    )
    task_timeout_s: float = Field(
        1800.0,
        gt=0,
        description="ingest: a task without a result after this long is published again "
        "(same study and generation: a late first result is still recorded only once)",
    )
    reconnect_interval_s: float = Field(
        5.0, gt=0, description="ingest: wait between attempts to reach a broker that is down"
    )

    def node_name(self, http: HttpSettings) -> str:
        """``node_id`` or ``<hostname>-<http port>``."""
        import socket

        return self.node_id or f"{socket.gethostname()}-{http.port}"

    def ingest_url(self, http: HttpSettings) -> str:
        """``advertise_url`` or the URL of this node's own DICOMweb root."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        scheme = "https" if http.tls_cert_file else "http"
        root = "/" + http.root.strip("/") if http.root.strip("/") else ""
        return f"{scheme}://{http.host}:{http.port}{root}"


class LogSettings(Section):
    level: str = "INFO"
    format: Literal["text", "json"] = "text"


class AuditSettings(Section):
    """The audit trail: DICOM PS3.15 A.5 audit messages (IHE ATNA), queued durably and sent."""

    enabled: bool = Field(True, description="emit audit messages (PS3.15 A.5)")
    destination: Literal["file", "syslog-tls", "syslog-udp", "syslog-tcp"] = Field(
        "file",
        description="where messages go: `file` (JSON lines at `file_path`), `syslog-tls` "
        "(RFC 5425), `syslog-udp` (RFC 5426) or `syslog-tcp` (RFC 6587 octet counting, "
        "plain: a local relay only)",
    )
    host: str = Field("127.0.0.1", description="syslog receiver (audit record repository) host")
    port: int = Field(6514, description="syslog receiver port (6514: syslog over TLS)")
    tls_ca_file: Path | None = Field(
        None, description="CA bundle that verifies the receiver; empty = the system CAs"
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM client certificate for mutual TLS (IHE ATNA); empty = none"
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of `tls_cert_file`")
    app_name: str = Field("scp-node", description="syslog APP-NAME (RFC 5424 6.2.5)")
    enterprise_site_id: str = Field(
        "", description="AuditEnterpriseSiteID of every message (PS3.15 A.5.1); empty = left out"
    )
    source_id: str = Field(
        "",
        description="AuditSourceID of every message; empty = `[dicom] ae_title`@host name",
    )
    file_path: Path | None = Field(
        None,
        description="the JSON-lines audit file (written for `destination = file`, and as a "
        "local copy when `local_copy`); empty = `<data_dir>/audit/audit.jsonl`",
    )
    local_copy: bool = Field(
        False, description="with a syslog destination, also append every message to `file_path`"
    )
    queue_path: Path | None = Field(
        None,
        description="the durable queue (SQLite) of messages not yet sent; empty = "
        "`<data_dir>/audit/queue.sqlite3`",
    )
    retry_initial_s: float = Field(
        1.0, gt=0, description="first wait after a failed send; doubles up to `retry_max_s`"
    )
    retry_max_s: float = Field(60.0, gt=0, description="longest wait between send attempts")


class Settings(BaseSettings):
    """All of the node's settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    dicom: DicomSettings = Field(default_factory=DicomSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    series: SeriesRules = Field(default_factory=SeriesRules)
    report: ReportSettings = Field(default_factory=ReportSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_files = _CONFIG_FILES_FOR_LOAD["files"]
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_files:  # later files override earlier ones, table by table
            sources.append(
                TomlConfigSettingsSource(settings_cls, toml_file=toml_files, deep_merge=True)
            )
        return tuple(sources)


_CONFIG_FILES_FOR_LOAD: dict[str, list[Path]] = {"files": []}

#: A TOML file read *before* the one named by ``--config`` / ``SCP_NODE_CONFIG`` (the container
#: image sets it to its own defaults: data under /data, listeners on all interfaces), so that a
#: mounted file overrides the image's defaults and environment variables override both.
BASE_CONFIG_VARIABLE = f"{ENV_PREFIX}BASE_CONFIG"


class ConfigError(Exception):
    """A configuration the node cannot run with; the message is one line naming the file or
    environment variable, the key and the fix (``scp-node`` prints it and exits 2)."""


def config_files(config_file: Path | str | None = None) -> list[tuple[Path, str]]:
    """The TOML files :func:`load_settings` reads, lowest precedence first, each with where it
    was named (``SCP_NODE_BASE_CONFIG``, ``--config`` or ``SCP_NODE_CONFIG``)."""
    files: list[tuple[Path, str]] = []
    base = os.environ.get(BASE_CONFIG_VARIABLE)
    if base:
        files.append((Path(base), BASE_CONFIG_VARIABLE))
    if config_file:
        files.append((Path(config_file), "--config"))
    elif os.environ.get(f"{ENV_PREFIX}CONFIG"):
        files.append((Path(os.environ[f"{ENV_PREFIX}CONFIG"]), f"{ENV_PREFIX}CONFIG"))
    return files


def environment_overrides() -> list[str]:
    """Names of the ``SCP_NODE_*`` environment variables that override settings (not values)."""
    skip = {f"{ENV_PREFIX}CONFIG", BASE_CONFIG_VARIABLE}
    return sorted(
        name
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in skip and "__" in name
    )


def describe_sources(config_file: Path | str | None = None) -> str:
    """``built-in defaults < FILE (SCP_NODE_BASE_CONFIG) < FILE (--config) < environment: ...``:
    where the effective settings come from, lowest precedence first (no values)."""
    parts = ["built-in defaults"] + [
        f"{path} ({named})" for path, named in config_files(config_file)
    ]
    overrides = environment_overrides()
    if overrides:
        parts.append("environment " + ", ".join(overrides))
    return " < ".join(parts)


def overridden_file_keys(config_file: Path | str | None = None) -> list[str]:
    """``SCP_NODE_STORAGE__DATA_DIR overrides [storage] data_dir of FILE``: every key a config
    file sets that an environment variable replaces (names only, never values)."""
    found: list[str] = []
    for path, _ in config_files(config_file):
        if not path.is_file():
            continue
        try:
            with path.open("rb") as handle:
                data: Any = tomllib.load(handle)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        for name in environment_overrides():
            loc = name[len(ENV_PREFIX) :].lower().split("__")
            table = data
            for part in loc:
                matches = [k for k in table if k == part] if isinstance(table, dict) else []
                table = table[matches[0]] if matches else None
            if table is not None:
                key = f"[{'.'.join(loc[:-1])}] {loc[-1]}" if len(loc) > 1 else loc[0]
                found.append(f"{name} overrides {key} of {path}")
    return found


def names_the_environment_cannot_reach(settings: Settings) -> list[str]:
    """Destination names whose keys no shell-exported ``SCP_NODE_DELIVERY__DESTINATIONS__<NAME>__*``
    can set: the environment source reads names in lower case, and ``export`` takes letters,
    digits and underscores only."""
    return [
        name
        for name in settings.delivery.destinations
        if not name or name != name.lower() or not name.replace("_", "").isalnum()
    ]


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from the embedded defaults, then the TOML files of :func:`config_files`, then the
    environment; raises :class:`ConfigError` with a one-line reason.

    ``config_file`` falls back to the ``SCP_NODE_CONFIG`` environment variable.
    """
    files = config_files(config_file)
    for path, named in files:
        if not path.is_file():
            raise ConfigError(
                f"config file not found: {path} (named by {named}): correct the path, or leave "
                f"it out to run on the built-in defaults"
            )
        try:
            with path.open("rb") as handle:
                tomllib.load(handle)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    _CONFIG_FILES_FOR_LOAD["files"] = [path for path, _ in files]
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, [path for path, _ in files])) from exc
    finally:
        _CONFIG_FILES_FOR_LOAD["files"] = []


def _explain(error: ValidationError, files: list[Path]) -> str:
    """One line for the first problem (and how many more): where, which key, what to do."""
    problems = error.errors()
    first = problems[0]
    loc = [str(part) for part in first["loc"]]
    key = f"[{'.'.join(loc[:-1])}] {loc[-1]}" if len(loc) > 1 else (loc[0] if loc else "?")
    where = _where(loc, files)
    if first["type"] == "extra_forbidden":
        text = (
            f"{where}: unknown key {key}: remove it or correct its spelling (every key is in "
            f"docs/configuration.md and config/default.toml)"
        )
    else:
        secret = any(word in loc[-1].lower() for word in ("token", "key", "password"))
        value = "" if secret or "input" not in first else f" = {first['input']!r}"
        text = f"{where}: {key}{value}: {first['msg']} (see docs/configuration.md)"
    more = len(problems) - 1
    return text + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def _where(loc: list[str], files: list[Path]) -> str:
    """The environment variable or config file that set the setting at ``loc``."""
    environment = {name.upper(): name for name in os.environ}
    for depth in range(len(loc), 0, -1):
        name = ENV_PREFIX + "__".join(loc[:depth]).upper()
        if name in environment:
            return f"environment variable {environment[name]}"
    for path in reversed(files):
        with path.open("rb") as handle:
            table: Any = tomllib.load(handle)
        for part in loc:
            table = table.get(part) if isinstance(table, dict) else None
        if table is not None:
            return f"config file {path}"
    return f"config file {files[-1]}" if files else "settings"
