"""Settings from the environment (SPEC section 9), validated at start-up."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.db import SessionLimits

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
    # Limits on every database session (shared.db.SessionLimits): a statement, a lock wait or a
    # transaction left idle never holds a consumer (or a lock) for ever; keepalives find a dead
    # peer behind a silent network.
    database_statement_timeout_ms: int = Field(default=60_000, ge=0)
    database_lock_timeout_ms: int = Field(default=30_000, ge=0)
    database_idle_in_transaction_timeout_ms: int = Field(default=120_000, ge=0)
    database_tcp_keepalives_idle_s: int = Field(default=30, ge=0)
    database_tcp_keepalives_interval_s: int = Field(default=10, ge=0)
    database_tcp_keepalives_count: int = Field(default=3, ge=0)
    # A fetched batch is bounded by bytes as well as by count (500 records).
    kafka_fetch_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024 * 1024)
    kafka_max_partition_fetch_bytes: int = Field(default=2 * 1024 * 1024, ge=1024 * 1024)
    # A consumer that does not poll again within this long leaves its group and its partitions
    # go to another instance. A batch's work is held well inside it (see ServiceRuntime).
    kafka_max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    # A fetched batch of fewer than 20 records waits this long for more (0: never): a trickle
    # applied a few records a transaction costs a transaction's fixed cost each time. 100 ms:
    # at 500 events/s a third less CPU than 20 ms for ~85 ms more at the median, p99 unchanged
    # (bench/README.md, item 51); a refund is due within hours, not milliseconds.
    kafka_batch_linger_ms: int = Field(default=100, ge=0, le=1000)
    # /health/ready answers 503 ("degraded") once batches have kept failing this long.
    aftersales_stuck_after_seconds: float = Field(default=300.0, ge=0)
    # `aftersales run` waits this long for a database or broker that cannot be reached yet
    # (started beside it, restarting) before giving up with one line and exit code 2.
    aftersales_startup_wait_seconds: float = Field(default=30.0, ge=0, le=600)
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
    # Processed event ids: at least as long as the topics keep records (7 days by default), or
    # a record delivered again after its id was purged would be applied twice.
    aftersales_retention_inbox_days: int = Field(default=30, ge=7, le=3650)
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
            raise PydanticCustomError(
                "database_url",
                "must be a postgresql+asyncpg:// URL, not {given}",
                {"given": masked_url(value)},
            )
        return value

    def database_limits(self) -> SessionLimits:
        return SessionLimits(
            statement_timeout_ms=self.database_statement_timeout_ms,
            lock_timeout_ms=self.database_lock_timeout_ms,
            idle_in_transaction_timeout_ms=self.database_idle_in_transaction_timeout_ms,
            tcp_keepalives_idle_s=self.database_tcp_keepalives_idle_s,
            tcp_keepalives_interval_s=self.database_tcp_keepalives_interval_s,
            tcp_keepalives_count=self.database_tcp_keepalives_count,
        )


def masked_url(url: str) -> str:
    """`url` with its password shown as ***, for messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(an unreadable URL)"
    if not password:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return parts._replace(netloc=f"{name}:***@{host}").geturl()


class SettingsError(ValueError):
    """Settings from the environment that are wrong: `problems` has one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings: " + "; ".join(problems))
        self.problems = problems


def load_settings() -> Settings:
    """The settings from the environment; a bad value is one line per variable naming it,
    never showing its value (DATABASE_URL holds a password)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(
            [
                f"{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            ]
        ) from None
