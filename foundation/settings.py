"""One settings model for every process; each field reads a GEOSAGA_* environment variable."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REGION_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_API_KEY_LENGTH = 16
# The dev server's GOGC (Go's default 100): more memory for less of its CPU per workflow.
DEV_GO_GC = 400


class FaultSpec(BaseModel):
    """Faults injected into one region's activities (chaos testing; off unless configured).

    Each rate is the chance per activity attempt: a latency spike before it runs; a transient
    database error instead of running it; a lost reply after it ran (its effect is committed,
    the worker reports a failure, the retry must not act twice); a stall longer than the
    activity timeout before it runs.
    """

    model_config = ConfigDict(extra="forbid")

    latency_rate: float = Field(default=0.0, ge=0, le=1)
    latency_seconds: float = 0.5
    error_rate: float = Field(default=0.0, ge=0, le=1)
    lost_reply_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_seconds: float = 35.0
    # The draws' seed, so a run's faults can be drawn again (none: fresh each process).
    seed: int | None = None


class GatewayFaults(BaseModel):
    """What `geosaga gateway` breaks on purpose in its writes (docs/gateway.md, "Faults").

    Each rate is a chance per request: a delay; a 503 before anything is written; a 502 after
    the write committed and its answer was kept (the reply is lost); a hold of `hang_seconds`,
    past the caller's timeout, before the request is handled. `seed` makes the draws
    replayable.
    """

    model_config = ConfigDict(extra="forbid")

    latency_rate: float = Field(default=0.0, ge=0, le=1)
    latency_seconds: float = Field(default=0.5, ge=0, le=600)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    lost_reply_rate: float = Field(default=0.0, ge=0, le=1)
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    hang_seconds: float = Field(default=15.0, ge=0, le=600)
    seed: int | None = None


class SagaTiming(BaseModel):
    """The saga's timing: settings like the rest, and copied into every saga's input
    (`SagaOptions`) so a replay sees the values its run had."""

    # A region that does not take a stock check or reservation within this is treated as
    # having nothing to offer.
    allocation_timeout_seconds: float = 5.0
    payment_timeout_seconds: float = 120.0
    retry_initial_interval_seconds: float = 0.5
    retry_maximum_interval_seconds: float = 10.0
    # How many attempts a compensation gets before the saga is marked needs_attention; it keeps
    # retrying afterwards.
    compensation_attempts_before_attention: int = 5
    compensation_attention_after_seconds: float = 30.0
    # Rounds of a stuck compensation start further apart each time, up to this.
    compensation_max_backoff_seconds: float = 300.0
    # One attempt of a step may run this long; a worker that died mid-step is noticed then.
    activity_timeout_seconds: float = 30.0


class Settings(BaseSettings, SagaTiming):
    """Every field but the saga's timing (`SagaTiming`, inherited) is declared here."""

    model_config = SettingsConfigDict(env_prefix="GEOSAGA_", extra="ignore", frozen=True)

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    workflow_task_queue: str = "orders"
    region_task_queue_prefix: str = "region."

    # Comma-separated in the environment: GEOSAGA_REGIONS=us-east,eu-west,ap-south
    regions: Annotated[tuple[str, ...], NoDecode] = ("us-east", "eu-west", "ap-south")
    data_dir: Path = Path(".data")
    # `{region}` is the region name, `{region_id}` the same with `_` for `-`, `{data_dir}` the
    # data directory. Any SQLAlchemy URL works; PostgreSQL needs one database (or schema) each.
    database_url_template: str = "sqlite:///{data_dir}/{region}.db"
    # A JSON object overriding the template per region: {"eu-west": "postgresql+psycopg://..."}
    database_urls: dict[str, str] = Field(default_factory=dict)
    # How long a region store may keep a request waiting (to connect, for a pooled connection,
    # for the write lock: SQLite's busy timeout, PostgreSQL's lock_timeout) before it is a 503.
    store_timeout_seconds: float = Field(default=30.0, gt=0)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_url: str = "http://127.0.0.1:8000"
    # The region whose store serves a cart request without an X-Region header (default: the
    # first region).
    api_region: str | None = None
    cart_removal_window_seconds: float = 60.0

    currency: str = "USD"
    max_body_bytes: int = 64 * 1024
    max_lines: int = 50
    max_quantity: int = 1000

    # Replication: every region's outbox relayed to every other region (a region's own events
    # reach its read models in the transaction that writes them).
    replication: bool = True
    replication_batch_size: int = 100
    replication_poll_seconds: float = 10.0
    # How long a relay waits for more events once some arrived: fewer, fuller batches for
    # that much more replication lag.
    replication_linger_seconds: float = 2.0
    # ...but it ships once the source's worker has written nothing for this long (0: always
    # linger), so a quiet region's events do not wait out the linger.
    replication_settle_seconds: float = Field(default=0.5, ge=0)
    replication_max_attempts: int = 5
    # How long an event may wait in a region's inbox (for a predecessor that never comes, or
    # for a clock too far ahead to close in) before it is dead-lettered.
    replication_hold_seconds: float = Field(default=300.0, gt=0)

    # The embedded dev server's SQLite pragmas, dynamic config and GOGC, and the workers'
    # tuned options (False: the SDK's defaults).
    dev_sqlite_pragmas: bool = True
    dev_dynamic_config: dict[str, Any] = Field(default_factory=dict)
    dev_go_gc: int = Field(default=DEV_GO_GC, ge=1)
    worker_tuning: bool = True

    # Chaos testing: a JSON object of region → FaultSpec, e.g.
    # GEOSAGA_FAULTS='{"eu-west": {"latency_rate": 0.2, "error_rate": 0.1}}'
    faults: dict[str, FaultSpec] = Field(default_factory=dict)
    # Fault testing only (`geosaga torture`): a folder whose file `<region>` holds an offset in
    # ms added to that region's physical clock (regions/clock.py); None: the wall clock as is.
    clock_skew_dir: Path | None = None

    # Security: README, "Authentication and encrypted payloads". `production` refuses to run
    # without keys of its own; `development` falls back to the published development keys.
    environment: Literal["development", "production"] = "development"
    # Keys accepted in `Authorization: Bearer <key>`, comma-separated: add the new key, move
    # clients over, then remove the old one.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # Whether GET endpoints need a key too (writes and operator calls always do).
    auth_reads: bool = False
    # Accept codec requests that come from the Web UI's origin without a key (the dev
    # server's UI sends none). Unset: on in development, off in production.
    codec_trust_ui_origin: bool | None = None
    codec_max_body_bytes: int = 4 * 1024 * 1024
    # Payload encryption keys: a JSON object of key id → base64 of 32 random bytes. The key
    # named by payload_key_id (default: the first) encrypts; every key decrypts.
    payload_keys: dict[str, SecretStr] = Field(default_factory=dict)
    payload_key_id: str | None = None
    # Connecting to a TLS-enabled Temporal or Temporal Cloud: the server's root CA (PEM file;
    # default: the system's roots), a client certificate and key for mTLS, a server name
    # that differs from the address, and an API key (which turns TLS on by itself).
    temporal_tls: bool = False
    temporal_tls_ca_cert: Path | None = None
    temporal_tls_client_cert: Path | None = None
    temporal_tls_client_key: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: SecretStr | None = None

    # Telemetry (foundation/telemetry.py; README, "Production"). A worker serves the Temporal
    # SDK's metrics and the saga's for Prometheus at http://<host>:<port>/metrics when a port
    # is set (each worker process needs its own). Tracing makes spans from the HTTP request
    # through the saga to every activity, exported to an OTLP/HTTP collector when an endpoint
    # is set (e.g. http://otel-collector:4318/v1/traces); log lines carry their trace id.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    tracing: bool = True
    otlp_endpoint: str | None = None
    log_format: Literal["text", "json"] = "text"

    # The payment gateway (docs/gateway.md): where `geosaga gateway` listens and keeps its
    # ledger (None: a SQLite file in the data directory), where workers call it, with which key
    # (development falls back to a published one: foundation/security.py), and how long a worker
    # waits for an answer (connecting: 2 s) before the activity fails and Temporal retries it.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8100, ge=1, le=65535)
    gateway_url: str = "http://127.0.0.1:8100"
    gateway_database_url: str | None = None
    gateway_api_key: SecretStr | None = None
    gateway_timeout_seconds: float = Field(default=10.0, gt=0)
    # Fault testing only: what the gateway breaks on purpose from its start (PUT /faults
    # changes it while it runs).
    gateway_faults: GatewayFaults = Field(default_factory=GatewayFaults)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for position, key in enumerate(value):
            secret = key.get_secret_value()
            if len(secret) < MIN_API_KEY_LENGTH:
                raise ValueError(
                    f"api key #{position + 1} is shorter than {MIN_API_KEY_LENGTH} characters"
                )
            if not secret.isascii() or not secret.isprintable() or " " in secret:
                raise ValueError(f"api key #{position + 1} must be printable ASCII, no spaces")
        return value

    @field_validator("gateway_api_key")
    @classmethod
    def _check_gateway_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if len(secret) < MIN_API_KEY_LENGTH:
                raise ValueError(f"gateway_api_key is shorter than {MIN_API_KEY_LENGTH} characters")
            if not secret.isascii() or not secret.isprintable() or " " in secret:
                raise ValueError("gateway_api_key must be printable ASCII, no spaces")
        return value

    @field_validator("payload_keys")
    @classmethod
    def _check_payload_keys(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for key_id, key in value.items():
            if not KEY_ID.match(key_id):
                raise ValueError(f"payload key id {key_id!r} must match {KEY_ID.pattern}")
            try:
                raw = base64.b64decode(key.get_secret_value(), validate=True)
            except binascii.Error:
                raise ValueError(f"payload key {key_id!r} is not valid base64") from None
            if len(raw) != 32:
                raise ValueError(
                    f"payload key {key_id!r} is {len(raw)} bytes; AES-256 needs 32 "
                    "(make one with: openssl rand -base64 32)"
                )
        return value

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.payload_key_id is not None and self.payload_key_id not in self.payload_keys:
            raise ValueError(f"payload_key_id {self.payload_key_id!r} is not in payload_keys")
        if (self.temporal_tls_client_cert is None) != (self.temporal_tls_client_key is None):
            raise ValueError(
                "temporal_tls_client_cert and temporal_tls_client_key go together (mTLS)"
            )
        return self

    @field_validator("regions", mode="before")
    @classmethod
    def _split_regions(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("regions")
    @classmethod
    def _check_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one region is required")
        for name in value:
            if not REGION_NAME.match(name):
                raise ValueError(f"region name {name!r} must match {REGION_NAME.pattern}")
        if len(set(value)) != len(value):
            raise ValueError("region names must be unique")
        return value

    @model_validator(mode="after")
    def _check_database_urls(self) -> Settings:
        unknown = set(self.database_urls) - set(self.regions)
        if unknown:
            raise ValueError(f"database_urls names unknown regions: {sorted(unknown)}")
        unknown = set(self.faults) - set(self.regions)
        if unknown:
            raise ValueError(f"faults names unknown regions: {sorted(unknown)}")
        if self.api_region is not None and self.api_region not in self.regions:
            raise ValueError(f"api_region {self.api_region!r} is not one of the regions")
        return self

    @property
    def default_region(self) -> str:
        return self.api_region or self.regions[0]

    def task_queue(self, region: str) -> str:
        return f"{self.region_task_queue_prefix}{region}"

    def region_queues(self) -> dict[str, str]:
        return {region: self.task_queue(region) for region in self.regions}

    def database_url(self, region: str) -> str:
        if region in self.database_urls:
            return self.database_urls[region]
        return self.database_url_template.format(
            region=region, region_id=region.replace("-", "_"), data_dir=self.data_dir
        )

    def gateway_database(self) -> str:
        """The gateway's store: its own URL, or a SQLite file in the data directory."""
        return self.gateway_database_url or f"sqlite:///{self.data_dir}/gateway.db"

    def ui_workflow_url(self, workflow_id: str) -> str:
        base = self.temporal_ui_url.rstrip("/")
        return f"{base}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"
