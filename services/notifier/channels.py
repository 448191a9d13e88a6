"""Delivery channels: SMS and IM gateways over HTTP, e-mail over SMTP, a webhook, and the log.

Every `send` returns a `Result` and never raises: a gateway problem is either transient (HTTP
5xx, 408, 425, 429, timeouts, connection errors, SMTP 4xx) and retried later, or permanent
(other HTTP 4xx, SMTP 5xx) and the next channel is tried. Sends run outside any database
transaction (the attempt is claimed before and recorded after), each bounded by a short
timeout (`HTTP_TIMEOUT`, `SMTP_TIMEOUT`). Each HTTP gateway keeps one connection pool for the
service's life (`close` at stop).

A `Result.detail` names the gateway and the status, never an address or a response body (a
gateway may echo the phone number back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import httpx

from services.notifier import signature
from services.notifier.domain.routing import LOG
from shared.settings import Settings

log = logging.getLogger("aftersales.notifier.delivery")

# Short: a buyer's message is worth little after a long wait, and the scheduler records a
# batch's outcomes only once all its sends returned (docs/decisions-notifier.md).
HTTP_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
# Requests in flight to one gateway (the scheduler hands over up to 100 messages at once): the
# rest wait their turn here, since httpcore's pool scans every waiting request at each
# hand-over (its cost grows with the square of the queue).
HTTP_CONCURRENCY = 16
HTTP_LIMITS = httpx.Limits(
    max_connections=HTTP_CONCURRENCY, max_keepalive_connections=HTTP_CONCURRENCY
)
# How long a message waits for one of those slots: past it the gateway is busy and the
# attempt is handed back uncounted (`busy`), to be sent again shortly, rather than timing out
# in the queue and using up one of its attempts without reaching the gateway. Short enough
# that the wait and the request stay inside the notifier's send deadline (10 s).
QUEUE_WAIT = 4.0
SMTP_TIMEOUT = 5.0
SMTP_CONCURRENCY = 10  # SMTP sessions open at once (one connection per message)
DEFAULT_SENDER = "aftersales@localhost"
_MESSAGE_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales:notifier:message-id")
# Line breaks and other control characters: a header holds none (a name is display only).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Outgoing:
    """One rendered message on its way to one channel."""

    delivery_id: str
    channel: str
    customer_id: str
    order_id: str | None
    template: str
    language: str
    subject: str
    body: str
    urgent: bool
    at: datetime
    # Personal data, only for the channel that needs it (never logged, never in events).
    address: str | None = field(default=None, repr=False)  # phone (sms) or e-mail (email)
    display_name: str | None = field(default=None, repr=False)  # e-mail To display name
    recipient: str | None = None  # the masked address, for logs and events
    stands_in_for: str | None = None  # the log channel: the buyer's channel it replaces


@dataclass(frozen=True)
class Result:
    ok: bool
    transient: bool = False
    detail: str = ""
    # False: the message never left (every slot to the gateway busy); the attempt is not one.
    attempted: bool = True


SENT = Result(ok=True, detail="sent")


def transient(detail: str) -> Result:
    return Result(ok=False, transient=True, detail=detail)


def permanent(detail: str) -> Result:
    return Result(ok=False, transient=False, detail=detail)


def busy(detail: str) -> Result:
    return Result(ok=False, transient=True, detail=detail, attempted=False)


@asynccontextmanager
async def slot(slots: asyncio.Semaphore, wait: float) -> AsyncIterator[bool]:
    """One of a gateway's slots, waited for `wait` seconds at most: yields False (no slot
    held) when none came free in time."""
    try:
        async with asyncio.timeout(wait):
            await slots.acquire()
    except TimeoutError:
        yield False
        return
    try:
        yield True
    finally:
        slots.release()


class Channel(Protocol):
    name: str

    async def send(self, message: Outgoing) -> Result: ...

    async def close(self) -> None: ...


# --- HTTP gateways: SMS, IM and the webhook ---------------------------------------------------


def http_status_result(gateway: str, status: int) -> Result:
    if 200 <= status < 300:
        return SENT
    if status in (408, 425, 429) or status >= 500:
        return transient(f"{gateway}: HTTP {status}")
    return permanent(f"{gateway}: HTTP {status}")


class HttpGateway:
    """POSTs one JSON message per notification (SMS, IM, webhook).

    Headers: `Idempotency-Key` (the notification's request id, the same on every retry) and,
    with a secret, `X-Aftersales-Signature: t=<unix seconds>,v1=<hex>` (`signature.sign`).
    One `httpx.AsyncClient` per gateway, made at the first send and kept until `close`.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        secret: str | None = None,
        timeout: httpx.Timeout = HTTP_TIMEOUT,
        concurrency: int = HTTP_CONCURRENCY,
        queue_wait: float = QUEUE_WAIT,
    ) -> None:
        self.name = name
        self.url = url
        self._secret = secret.encode("utf-8") if secret else None
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._in_flight = asyncio.Semaphore(concurrency)
        self._queue_wait = queue_wait

    def _pool(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                timeout=self._timeout, limits=HTTP_LIMITS, follow_redirects=False
            )
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def payload(self, m: Outgoing) -> dict[str, Any]:
        common = {
            "id": m.delivery_id,
            "channel": self.name,
            "template": m.template,
            "language": m.language,
            "urgent": m.urgent,
        }
        if self.name == "sms":
            return {**common, "to": m.address, "text": f"{m.subject}\n{m.body}"}
        if self.name == "im":
            # The platform's IM addresses the buyer by account, never by phone.
            return {
                **common,
                "to": m.customer_id,
                "order_id": m.order_id,
                "title": m.subject,
                "text": m.body,
            }
        return {  # webhook: customer_id only, no personal data
            **common,
            "customer_id": m.customer_id,
            "order_id": m.order_id,
            "title": m.subject,
            "text": m.body,
            "sent_at": m.at.isoformat(),
        }

    async def send(self, message: Outgoing) -> Result:
        gateway = f"{self.name} gateway"
        body = json.dumps(self.payload(message), ensure_ascii=False).encode("utf-8")
        headers = {
            "content-type": "application/json; charset=utf-8",
            "idempotency-key": message.delivery_id,
            "user-agent": "aftersales-notifier",
        }
        if self._secret is not None:
            stamp = int(message.at.timestamp())
            headers[signature.HEADER.lower()] = signature.sign(self._secret, body, stamp)
        try:
            async with slot(self._in_flight, self._queue_wait) as held:
                if not held:
                    return busy(f"{gateway}: busy (every connection to it in use)")
                response = await self._pool().post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return transient(f"{gateway}: timeout")
        except httpx.TransportError as exc:
            return transient(f"{gateway}: {type(exc).__name__}")
        except Exception as exc:  # never into the scheduler: it would roll the batch back
            return transient(f"{gateway}: {type(exc).__name__}")
        return http_status_result(gateway, response.status_code)


# --- e-mail over SMTP -------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    use_tls: bool
    start_tls: bool | None  # None: STARTTLS when the server offers it
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpTarget:
    """`smtp://[user:password@]host[:port][?from=addr&starttls=true|false]`, or `smtps://`
    (TLS from the start, port 465 by default).

    With credentials the connection must be encrypted: `smtps://`, or STARTTLS required (a
    server that does not offer it, or an attacker who strips it, gets no password and no
    message); `starttls=false` with credentials is refused."""
    problem = ValueError(
        "AFTERSALES_SMTP_URL must look like smtp://host:port or smtps://host:port "
        "(optionally user:password@ and ?from=sender@example.com&starttls=true)"
    )
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise problem from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise problem
    query = parse_qs(parts.query)
    starttls = (query.get("starttls") or [""])[0].lower()
    if starttls not in ("", "true", "false"):
        raise problem
    use_tls = parts.scheme == "smtps"
    start_tls = None if not starttls else starttls == "true"
    if parts.username and not use_tls:
        if start_tls is False:
            raise ValueError(
                "AFTERSALES_SMTP_URL has credentials and starttls=false: a password is only sent "
                "encrypted (use starttls=true or smtps://)"
            )
        start_tls = True  # required, never opportunistic: no plain-text fallback
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if use_tls else 25),
        use_tls=use_tls,
        start_tls=start_tls,
        sender=(query.get("from") or [DEFAULT_SENDER])[0],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def smtp_code_result(code: int, what: str) -> Result:
    if 400 <= code < 500:
        return transient(f"e-mail: SMTP {code} ({what}, temporary)")
    return permanent(f"e-mail: SMTP {code} ({what})")


class SmtpChannel:
    name = "email"

    def __init__(
        self,
        target: SmtpTarget,
        *,
        timeout: float = SMTP_TIMEOUT,
        concurrency: int = SMTP_CONCURRENCY,
        queue_wait: float = QUEUE_WAIT,
    ) -> None:
        self.target = target
        self._timeout = timeout
        self._sessions = asyncio.Semaphore(concurrency)
        self._queue_wait = queue_wait

    async def close(self) -> None:
        return None  # one connection per message, closed after it

    def message(self, m: Outgoing) -> EmailMessage:
        assert m.address is not None
        msg = EmailMessage()
        msg["From"] = self.target.sender
        name = " ".join(_CONTROL.sub(" ", m.display_name or "").split())
        msg["To"] = formataddr((name, m.address))
        msg["Subject"] = m.subject
        msg["Date"] = format_datetime(m.at)
        # Stable per notification: a resend after an uncertain outcome is recognisably the same.
        msg["Message-ID"] = f"<{uuid.uuid5(_MESSAGE_ID_NAMESPACE, m.delivery_id)}@aftersales>"
        msg["X-Aftersales-Template"] = m.template
        msg.set_content(m.body)
        msg["Content-Language"] = m.language  # after set_content, which resets Content-*
        return msg

    async def send(self, message: Outgoing) -> Result:
        if not message.address:
            return permanent("e-mail: the buyer has no e-mail address")
        t = self.target
        try:
            email = self.message(message)
        except ValueError:  # a non-ASCII or multi-line address: no retry makes it one
            return permanent("e-mail: the buyer's e-mail address cannot be put in a message")
        try:
            async with slot(self._sessions, self._queue_wait) as held:
                if not held:
                    return busy("e-mail: busy (every SMTP session in use)")
                await self._send(email, t)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients] or [550]
            if all(400 <= code < 500 for code in codes):
                return transient(f"e-mail: SMTP {codes[0]} (recipient, temporary)")
            return permanent(f"e-mail: SMTP {max(codes)} (recipient refused)")
        except aiosmtplib.SMTPResponseException as exc:
            return smtp_code_result(exc.code, type(exc).__name__)
        except aiosmtplib.SMTPNotSupported:
            return permanent("e-mail: the SMTP server lacks a required extension (STARTTLS?)")
        except TlsRequired:
            return permanent("e-mail: the SMTP server offers no STARTTLS, which is required")
        except (aiosmtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refused
            return transient(f"e-mail: {type(exc).__name__}")
        except Exception as exc:  # never into the scheduler
            return transient(f"e-mail: {type(exc).__name__}")
        return SENT

    async def _send(self, email: EmailMessage, t: SmtpTarget) -> None:
        required = t.start_tls is True
        client = aiosmtplib.SMTP(
            hostname=t.host,
            port=t.port,
            use_tls=t.use_tls,
            # Required STARTTLS is done below, where its absence is an error of its own;
            # None lets the client upgrade when the server offers it (no credentials).
            start_tls=False if required else t.start_tls,
            timeout=self._timeout,
        )
        async with client:
            if required:
                if client.is_ehlo_or_helo_needed:
                    await client.ehlo()
                if not client.supports_extension("starttls"):
                    raise TlsRequired  # never a password or a message in plain text
                await client.starttls()
            if t.username is not None:
                await client.login(t.username, t.password or "")
            await client.send_message(email)


class TlsRequired(Exception):
    """The SMTP session is not encrypted though credentials are set."""


# --- the log channel (development) ------------------------------------------------------------


def log_line(m: Outgoing) -> str:
    """One readable line per message, with the masked recipient only."""
    to = m.recipient or f"customer {m.customer_id}"
    instead = f" (instead of {m.stands_in_for})" if m.stands_in_for else ""
    body = " ".join(line.strip() for line in m.body.splitlines() if line.strip())
    return f"✉ to {to} via log{instead} [{m.template}, {m.language}] {m.subject} | {body}"


class LogChannel:
    """Development: the message goes to the log (stderr) instead of a gateway."""

    name = LOG

    async def close(self) -> None:
        return None

    async def send(self, message: Outgoing) -> Result:
        log.info(
            log_line(message),
            extra={
                "service": "notifier",
                "request_id": message.delivery_id,
                "customer_id": message.customer_id,
                "template": message.template,
            },
        )
        return SENT


# --- from the settings -------------------------------------------------------------------------


def _http_url(value: str, variable: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{variable} must be an http:// or https:// URL")
    return value.strip()


def channels_from_settings(settings: Settings) -> Mapping[str, Channel]:
    """The configured channels; the log channel only in development."""
    channels: dict[str, Channel] = {}
    if settings.aftersales_sms_gateway_url:
        url = _http_url(settings.aftersales_sms_gateway_url, "AFTERSALES_SMS_GATEWAY_URL")
        channels["sms"] = HttpGateway("sms", url)
    if settings.aftersales_im_gateway_url:
        url = _http_url(settings.aftersales_im_gateway_url, "AFTERSALES_IM_GATEWAY_URL")
        channels["im"] = HttpGateway("im", url)
    if settings.aftersales_smtp_url:
        channels["email"] = SmtpChannel(parse_smtp_url(settings.aftersales_smtp_url))
    if settings.aftersales_webhook_url:
        url = _http_url(settings.aftersales_webhook_url, "AFTERSALES_WEBHOOK_URL")
        channels["webhook"] = HttpGateway("webhook", url, secret=settings.aftersales_webhook_secret)
    if settings.aftersales_dev_mode:
        channels[LOG] = LogChannel()
    return channels
