"""Settings from the environment (SPEC section 9), validated at start-up."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/aftersales"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    kafka_bootstrap_servers: str = DEFAULT_BOOTSTRAP
    kafka_idempotence: bool = True
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(default=None, repr=False)
    kafka_topic_partitions: int = Field(default=6, ge=1)
    kafka_topic_replication: int = Field(default=1, ge=1)
    database_url: str = Field(default=DEFAULT_DATABASE_URL, repr=False)
    aftersales_policy_file: str | None = None
    aftersales_encryption_key: str | None = Field(default=None, repr=False)
    aftersales_http_port: int = Field(default=8000, ge=0, le=65535)
    aftersales_log_level: str = "INFO"
    aftersales_log_format: str = "json"
    # Notifier delivery gateways (SPEC section 9), each optional.
    aftersales_sms_gateway_url: str | None = None  # HTTP POST of a JSON message
    aftersales_im_gateway_url: str | None = None  # HTTP POST of a JSON message
    aftersales_smtp_url: str | None = Field(default=None, repr=False)  # smtp://host:port
    aftersales_webhook_url: str | None = None  # HTTP POST of a JSON message per notification
    aftersales_webhook_secret: str | None = Field(default=None, repr=False)  # HMAC-SHA256 key
    # Development: the notifier logs messages it cannot send, and makes up an ephemeral
    # encryption key when none is configured. Never set in production.
    aftersales_dev_mode: bool = False
    # Retention (docs/decisions.md): technical rows, in days after they were done with...
    aftersales_retention_inbox_days: int = Field(default=30, ge=1, le=3650)  # processed event ids
    aftersales_retention_timers_days: int = Field(default=30, ge=1, le=3650)  # fired or cancelled
    aftersales_retention_outbox_days: int = Field(default=7, ge=1, le=3650)  # published events
    # ...and case records, in days after their last change: at least 6 months.
    aftersales_retention_case_days: int = Field(default=183, ge=183, le=3650)

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql+asyncpg:// URL")
        return value


def load_settings() -> Settings:
    return Settings()
