"""Wires the notifier service: topics it reads and writes, handlers, timers, channels, key."""

from __future__ import annotations

import logging

from services.notifier import tables
from services.notifier.channels import channels_from_settings
from services.notifier.contacts import check_key, notifier_cipher
from services.notifier.domain.routing import CHANNELS, LOG
from services.notifier.erasure import erasure_requested, lock_keys
from services.notifier.handlers import SERVICE, NotifierHandlers
from shared.clock import Clock
from shared.contracts import (
    CUSTOMER_ERASURE_REQUESTED,
    NOTIFICATION_FAILED,
    NOTIFICATION_SENT,
    topics,
)
from shared.messaging.retention import case_records
from shared.messaging.runtime import ServiceDefinition
from shared.policy import Policy
from shared.settings import Settings, load_settings

log = logging.getLogger("aftersales.notifier")

TIMER_CONCURRENCY = 4


def preflight(settings: Settings) -> None:
    """Checked before the service starts (`aftersales run`, `aftersales dev`): without an
    encryption key (outside development) or with a malformed gateway URL it does not start,
    with a message naming the variable."""
    check_key(settings)
    channels = channels_from_settings(settings)
    configured = [name for name in CHANNELS if name in channels]
    log.info(
        "notifier channels configured",
        extra={
            "service": SERVICE,
            "channels": ",".join(configured) or "none",
            "log_channel": LOG in channels,
        },
    )
    if settings.aftersales_webhook_url and not settings.aftersales_webhook_secret:
        log.warning(
            "the webhook channel is configured without AFTERSALES_WEBHOOK_SECRET: its requests "
            "are unsigned and a receiver cannot tell them from forged ones",
            extra={"service": SERVICE},
        )
    if not configured and LOG not in channels:
        log.warning(
            "no delivery gateway is configured: every notification will fail with no_channel "
            "(set AFTERSALES_SMS_GATEWAY_URL, AFTERSALES_IM_GATEWAY_URL, AFTERSALES_SMTP_URL "
            "or AFTERSALES_WEBHOOK_URL)",
            extra={"service": SERVICE},
        )


def build(policy: Policy, clock: Clock, settings: Settings | None = None) -> ServiceDefinition:
    """The notifier's definition.

    Unlike the other services it needs settings (the gateways and the encryption key): given,
    or read from the environment like `aftersales.registry.environment` does. A missing key does
    not stop `build` (the AsyncAPI and topic commands describe every service without keys):
    `preflight` refuses to start, and without it any use of contact data is a passing fault
    that retries, never a dead letter.
    """
    settings = settings or load_settings()
    cipher = notifier_cipher(settings, required=False)
    return definition(NotifierHandlers(policy, cipher, channels_from_settings(settings)))


def definition(handlers: NotifierHandlers) -> ServiceDefinition:
    """The notifier's definition around `handlers` (their key and channels): what `build`
    serves, and what the integration tests drive with channels and a key of their own."""
    return ServiceDefinition(
        name=SERVICE,
        metadata=tables.metadata,
        tables=tables.messaging,
        # No aftersales.coupons: the complaints service tells the buyer of every coupon itself.
        topics=(
            topics.ORDERS,
            topics.NOTIFICATIONS,
            topics.RETURN_DECISIONS,
            topics.REFUNDS,
            topics.CUSTOMERS,
        ),
        handlers={**handlers.events(), CUSTOMER_ERASURE_REQUESTED: erasure_requested},
        timer_handlers=handlers.timers(),
        lock_keys=lock_keys,
        publishes={topics.NOTIFICATION_STATUS: (NOTIFICATION_SENT, NOTIFICATION_FAILED)},
        # Contacts too: a buyer's contact data goes 6 months after their last paid order; an
        # erasure is remembered as long (an order paid before it is not read that late).
        case_records=case_records(
            tables.deliveries.c.updated_at,
            tables.dead_letters.c.created_at,
            tables.contacts.c.updated_at,
            tables.erasures.c.updated_at,
        ),
        closers=(handlers.close,),
        # Deliveries spend their time on round trips to the database and the gateways: four
        # transactions at once, on different buyers, get through a backlog about four times
        # faster (docs/decisions-notifier.md).
        timer_concurrency=TIMER_CONCURRENCY,
    )
