"""One settings model for every process; each field reads a GEOSAGA_* environment variable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REGION_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


class Settings(BaseSettings):
    """Defaults follow the public contract in ARCHITECTURE.md."""

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

    # Saga timing. A region that does not take a stock check or reservation within the
    # allocation timeout is treated as having nothing to offer.
    allocation_timeout_seconds: float = 5.0
    payment_timeout_seconds: float = 120.0
    retry_initial_interval_seconds: float = 0.5
    retry_maximum_interval_seconds: float = 10.0
    # How many attempts a compensation gets before the saga is marked needs_attention; it keeps
    # retrying afterwards.
    compensation_attempts_before_attention: int = 5
    compensation_attention_after_seconds: float = 30.0
    compensation_max_backoff_seconds: float = 300.0

    # Replication: every region's outbox relayed to every region (itself included, so that
    # each region's read models come from events alone).
    replication: bool = True
    replication_batch_size: int = 100
    replication_poll_seconds: float = 10.0
    replication_max_attempts: int = 5

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

    def ui_workflow_url(self, workflow_id: str) -> str:
        base = self.temporal_ui_url.rstrip("/")
        return f"{base}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"
