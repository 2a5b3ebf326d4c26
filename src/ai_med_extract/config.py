"""Settings: one object, nested groups, one env prefix (``AME_``), ``.env`` support.

Every knob is typed, bounded and described. ``AME_ENVIRONMENT=production`` refuses insecure values
(auth disabled, missing secrets) at start-up instead of running with them.

Nested values are set with a double underscore: ``AME_DATABASE__URL=postgresql+asyncpg://...``.
``DATABASE_URL``, the name most platforms set, is honoured as an alias of ``AME_DATABASE__URL``
(which wins when both are set); a URL without an async driver (``postgres://``, ``postgresql://``,
``sqlite:///``) gets this service's driver.
"""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# Driver-less URL schemes (as platforms write them) and the async driver this service uses for each.
_ASYNC_DRIVERS = {
    "postgres://": "postgresql+asyncpg://",
    "postgresql://": "postgresql+asyncpg://",
    "sqlite://": "sqlite+aiosqlite://",
}


def with_async_driver(url: str) -> str:
    """``postgres://u@h/db`` -> ``postgresql+asyncpg://u@h/db``; URLs naming a driver are kept."""
    for scheme, replacement in _ASYNC_DRIVERS.items():
        if url.startswith(scheme):
            return replacement + url[len(scheme) :]
    return url


class DatabaseUrlAlias(PydanticBaseSettingsSource):
    """``DATABASE_URL`` as the lowest-priority source of ``database.url``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        url = os.environ.get("DATABASE_URL", "").strip()
        return {"database": {"url": with_async_driver(url)}} if url else {}


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class DatabaseSettings(BaseModel):
    url: str = Field(
        "sqlite+aiosqlite:///./data/ai-med-extract.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB",
    )
    owner_url: str | None = Field(
        None,
        description="URL of the owner role that migrations and `db grant` run as (default: url). The "
        "service then connects with `url`, a role that may only SELECT and INSERT on audit_logs.",
    )
    pool_size: int = Field(5, ge=1, le=100, description="Connections kept open (PostgreSQL only)")
    echo: bool = Field(False, description="Log SQL statements (never enable with real data)")

    @property
    def migration_url(self) -> str:
        return self.owner_url or self.url

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class StorageSettings(BaseModel):
    directory: Path = Field(Path("./data/storage"), description="Where encrypted documents and results live")
    encryption_key: SecretStr | None = Field(
        None,
        description="Fernet key (urlsafe base64, 32 bytes) for data at rest. Development generates one "
        "in the storage directory; production requires it.",
    )
    retention_hours: float = Field(
        168.0, gt=0, le=24 * 365 * 10,
        description="Jobs, documents, results, medical records and PHI mappings older than this are removed"
    )
    sweep_interval_s: float = Field(300.0, gt=0, description="How often the retention sweep runs")


class RateLimitSettings(BaseModel):
    enabled: bool = True
    per_ip_per_minute: int = Field(100, ge=1, description="Requests a client IP may make in any 60 s")
    per_key_per_hour: int = Field(1000, ge=1, description="Requests an API key may make in any hour")
    burst: int = Field(20, ge=1, description="Requests a client may make within any one second")
    redis_url: SecretStr | None = Field(
        None,
        description="redis://HOST:PORT/DB: share the counters between replicas and workers "
        "(default: in this process's memory)",
    )
    redis_key_prefix: str = Field(
        "ame", pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="Prefix of the limiter's Redis keys"
    )


def _strong(values: list[SecretStr], name: str) -> list[SecretStr]:
    for value in values:
        if len(value.get_secret_value()) < 32:
            raise ValueError(f"{name}: every key must be 32+ characters")
    return values


class PurposeKeySettings(BaseModel):
    """Keys configured per purpose instead of derived from the master secret. Each is a list: the
    first makes new data, every one verifies (rotate by putting the new key first). Empty: derived
    with HKDF from AME_SECURITY__SECRET_KEY (see ``ai-med-extract keys rotate``)."""

    api_keys: list[SecretStr] = Field(default_factory=list, description="HMAC keys of API-key hashes")
    audit_chain: list[SecretStr] = Field(default_factory=list, description="HMAC keys of the audit hash chain")
    audit_checkpoint: list[SecretStr] = Field(
        default_factory=list, description="HMAC keys of the audit checkpoints' signatures"
    )
    phi: list[SecretStr] = Field(
        default_factory=list, description="Keys of PHI surrogates, date shifts and patient references"
    )

    @model_validator(mode="after")
    def _long_enough(self) -> Self:
        for name, values in self.by_purpose().items():
            _strong(values, f"AME_SECURITY__KEYS__{name.name.upper()}")
        return self

    def by_purpose(self) -> dict[Any, list[SecretStr]]:
        from ai_med_extract.security.keyring import Purpose

        return {
            Purpose.api_keys: self.api_keys,
            Purpose.audit_chain: self.audit_chain,
            Purpose.audit_checkpoint: self.audit_checkpoint,
            Purpose.phi: self.phi,
        }


class SecuritySettings(BaseModel):
    auth_enabled: bool = Field(True, description="Require an API key on every endpoint but health")
    secret_key: SecretStr | None = Field(
        None,
        description="Master secret: the keys of API-key hashes, the audit chain and its checkpoints and "
        "PHI surrogates are derived from it with HKDF, one per purpose. Development generates one in "
        "the storage directory; production requires it.",
    )
    previous_secret_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Master secrets replaced by AME_SECURITY__SECRET_KEY: data made under them still "
        "verifies (audit rows, checkpoints, API keys until their next use); nothing new is made with them.",
    )
    keys: PurposeKeySettings = Field(
        default_factory=PurposeKeySettings,
        description="Per-purpose keys instead of keys derived from secret_key (AME_SECURITY__KEYS__API_KEYS, ...)",
    )
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins")
    hsts: bool = Field(True, description="Send Strict-Transport-Security")
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of reverse proxies whose X-Forwarded-For is believed (e.g. the ingress's "
        "pod network). Empty: the peer address is the client, whatever the header says.",
    )

    @model_validator(mode="after")
    def _valid_networks(self) -> Self:
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {cidr!r} is not an address or network") from None
        return self


class AuditSettings(BaseModel):
    checkpoint_dir: Path | None = Field(
        None,
        description="Where signed checkpoints of the audit chain's head are appended (default: "
        "STORAGE_DIRECTORY/audit-checkpoints). Put it where the database's roles cannot write; "
        "`audit verify` reads it.",
    )
    checkpoint_interval_s: float = Field(60.0, ge=1, le=60, description="Seconds between checkpoints")
    checkpoint_syslog: str | None = Field(
        None, description="Also send each checkpoint to syslog: /dev/log, or HOST:PORT (UDP)"
    )


class JobEngine(StrEnum):
    embedded = "embedded"
    procrastinate = "procrastinate"


class JobSettings(BaseModel):
    concurrency: int = Field(2, ge=1, le=64, description="Jobs executed at the same time")
    queue_size: int = Field(100, ge=1, le=100_000, description="Jobs waiting; beyond this uploads get 503")
    timeout_s: float = Field(900.0, gt=0, description="A job running longer than this fails with JOB_TIMEOUT")
    worker_threads: int = Field(4, ge=1, le=64, description="Threads that run blocking stage work")
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with 503 when the queue is full")
    engine: JobEngine = Field(
        JobEngine.embedded,
        description="embedded: `serve` runs jobs itself; procrastinate: `ai-med-extract worker` processes "
        "run them, fed through PostgreSQL (the API never runs pipeline stages)",
    )
    lease_s: float = Field(30.0, gt=0, le=3600, description="A worker that stops renewing for this long loses its job")
    heartbeat_s: float = Field(5.0, gt=0, le=600, description="How often a running job's lease is renewed")
    max_attempts: int = Field(3, ge=1, le=20, description="Workers lost on one job before it fails")
    shutdown_grace_s: float = Field(
        20.0, ge=0, description="A stopping worker waits this long for its jobs, then hands them back"
    )
    warm_up: bool = Field(
        True, description="A worker runs the pipeline once on a made-up note before it takes jobs"
    )
    worker_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of a worker's /metrics (0: none)"
    )

    @model_validator(mode="after")
    def _heartbeat_inside_lease(self) -> Self:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError("jobs.heartbeat_s must be shorter than jobs.lease_s")
        return self


class UploadSettings(BaseModel):
    max_bytes: int = Field(50 * 1024 * 1024, ge=1, description="Largest accepted upload file (413 above)")
    max_files: int = Field(20, ge=1, le=1000, description="Files accepted in one upload request")


class ExtractionSettings(BaseModel):
    max_pages: int = Field(500, ge=1, description="Pages accepted in one document")
    max_image_pixels: int = Field(
        60_000_000, ge=1, description="Pixels per image or rendered page (decompression-bomb guard)"
    )
    ocr_dpi: int = Field(300, ge=72, le=600, description="Resolution scanned PDF pages are rendered at")
    ocr_timeout_s: float = Field(60.0, gt=0, description="Per-page OCR timeout")
    ocr_language: str = Field(
        "eng", pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$", description="Tesseract language pack(s), e.g. eng+deu"
    )
    ocr_detect_orientation: bool = Field(True, description="Detect and undo page rotation (Tesseract OSD)")
    ocr_preprocess: bool = Field(True, description="Grayscale, contrast stretch and Otsu threshold before OCR")
    ocr_min_text_chars: int = Field(
        10, ge=0, description="PDF pages whose text layer has fewer letters/digits than this are OCR'd"
    )
    docx_max_uncompressed_bytes: int = Field(
        200 * 1024 * 1024, ge=1, description="Total uncompressed size a DOCX may expand to"
    )
    docx_max_ratio: float = Field(100.0, gt=1, description="Largest compression ratio a DOCX member may have")
    container_max_depth: int = Field(
        3, ge=1, le=10, description="Documents nested in documents (FHIR attachments, C-CDA bodies) read this deep"
    )
    convert_timeout_s: float = Field(
        60.0, gt=0, description="Longest an external converter (antiword for .doc) may run"
    )
    page_workers: int = Field(
        1, ge=1, le=64, description="Processes that OCR / read PDF pages at the same time (1: in the job's thread)"
    )
    page_batch: int = Field(4, ge=1, le=100, description="Pages handed to a page worker as one task")
    parse_timeout_s: float = Field(
        600.0, ge=1, le=3600,
        description="Longest the parsing of one document may take (PDF text and OCR of its pages, DOCX, "
        "ODT, .doc, RTF, C-CDA and FHIR with their attachments). It runs in a parsing process that is "
        "killed past this, failing the document with EXTRACTION_TIMEOUT. Keep it below jobs.timeout_s.",
    )
    max_audio_seconds: float = Field(300.0, gt=0, description="Longest accepted audio")
    audio_chunk_s: float = Field(30.0, ge=5, le=30, description="Audio is transcribed in chunks this long")
    audio_decode_timeout_s: float = Field(120.0, gt=0, description="Longest ffmpeg may take to decode audio")
    transcribe_inline_max_s: float = Field(
        30.0, ge=0, description="POST /transcribe answers audio up to this long directly; longer becomes a job"
    )
    speech_model: str = Field("whisper-tiny.en", description="Speech model name from models_config.json")


class LogSettings(BaseModel):
    level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    json_format: bool = Field(True, description="One JSON object a line (false: plain text for humans)")


class ModelSettings(BaseModel):
    config_path: Path = Field(Path("models_config.json"), description="Model catalogue")
    profile: str = Field("cpu", pattern="^(cpu|t4)$", description="Resource profile: cpu or t4")
    cache_dir: Path = Field(Path("./data/models"), description="Where downloaded or exported models go")
    max_models: int | None = Field(None, ge=1, description="Override the profile's loaded-model limit")
    max_memory_mb: int | None = Field(None, ge=1, description="Override the profile's memory limit")
    generation_timeout_s: float = Field(180.0, gt=0, description="Longest one generation may take")
    max_waiting: int = Field(16, ge=1, description="Requests waiting for a busy model beyond which 503")
    n_threads: int | None = Field(None, ge=1, description="CPU threads for llama.cpp (default: cores)")
    isolated_backends: list[str] = Field(
        ["gguf"],
        description="Backends run in a child process of their own, so that a native crash fails one request "
        "with INFERENCE_CRASHED instead of ending the service (the process restarts on the next request)",
    )


class SummarySettings(BaseModel):
    cache_size: int = Field(100, ge=0, le=100_000, description="Summaries kept in the in-memory result cache")
    max_record_bytes: int = Field(
        20 * 1024 * 1024, ge=1, description="Largest accepted patient record (JSON bytes, 413 above)"
    )
    parallel_chunks: int = Field(2, ge=1, le=64, description="Record chunks summarised at the same time")
    chunk_max_tokens: int = Field(256, ge=16, le=8192, description="Tokens generated per chunk summary")
    narrative_max_tokens: int = Field(400, ge=16, le=8192, description="Tokens for the combined narrative")
    assessment_max_tokens: int = Field(200, ge=16, le=8192, description="Tokens for the assessment")
    recent_points: int = Field(5, ge=1, le=100, description="Recent values shown per vital or lab trend")
    grounding: str = Field(
        "remove", pattern="^(remove|flag)$", description="Unsupported generated statements: remove or flag"
    )
    token_flush_s: float = Field(
        0.1, ge=0, le=5, description="Streamed tokens are batched into one SSE event per this interval"
    )
    generation_timeout_s: float | None = Field(
        None, gt=0, le=3600, description="Longest one summary model call may take (default: the pool's)"
    )


class PhiRecognizerSettings(BaseModel):
    disabled: list[str] = Field(
        default_factory=list, description="Recognizers not to run (patterns, names, places, dictionary, ner, ...)"
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="Score multiplier per recognizer name (1.0 keeps its own scores)"
    )
    extra: list[str] = Field(
        default_factory=list, description="More recognizers, as 'package.module:ClassName' of a Recognizer subclass"
    )
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="Drop spans scoring below this after weighting")


class PhiSettings(BaseModel):
    ner: bool = Field(True, description="Run the spaCy NER layer where cheap layers leave doubt")
    recognizers: PhiRecognizerSettings = Field(default_factory=PhiRecognizerSettings)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AME_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    environment: Environment = Environment.development
    host: str = Field("127.0.0.1", description="Address `serve` binds to")
    port: int = Field(8000, ge=1, le=65535)

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    upload: UploadSettings = Field(default_factory=UploadSettings)
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    logging: LogSettings = Field(default_factory=LogSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    phi: PhiSettings = Field(default_factory=PhiSettings)
    summary: SummarySettings = Field(default_factory=SummarySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: AME_DATABASE__URL (environment or .env) over DATABASE_URL.
        return (init_settings, env_settings, dotenv_settings, file_secret_settings, DatabaseUrlAlias(settings_cls))

    @model_validator(mode="after")
    def _engine_needs_postgresql(self) -> Self:
        if self.jobs.engine is JobEngine.procrastinate and self.database.is_sqlite:
            raise ValueError("AME_JOBS__ENGINE=procrastinate needs a PostgreSQL AME_DATABASE__URL")
        return self

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Self:
        if self.environment is not Environment.production:
            return self
        problems = []
        if not self.security.auth_enabled:
            problems.append("AME_SECURITY__AUTH_ENABLED must be true")
        if self.security.secret_key is None or len(self.security.secret_key.get_secret_value()) < 32:
            problems.append("AME_SECURITY__SECRET_KEY must be set (32+ characters)")
        if self.storage.encryption_key is None:
            problems.append("AME_STORAGE__ENCRYPTION_KEY must be set")
        if "*" in self.security.cors_origins:
            problems.append("AME_SECURITY__CORS_ORIGINS must not contain '*'")
        if self.database.echo:
            problems.append("AME_DATABASE__ECHO must be false")
        if problems:
            raise ValueError("insecure production settings: " + "; ".join(problems))
        return self

    @property
    def checkpoint_dir(self) -> Path:
        return self.audit.checkpoint_dir or self.storage.directory / "audit-checkpoints"

    @cached_property
    def secrets_dir(self) -> Path:
        """Where development secrets are generated (never used in production)."""
        return self.storage.directory / ".secrets"
