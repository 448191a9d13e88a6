"""`aftersales console`: its configuration from the environment, and serving it."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from collections.abc import Callable, Mapping, Sequence

import uvicorn

from aftersales.http import HttpServer
from shared.settings import Settings

from .app import ConsoleConfig, console_app
from .services import Services, parse_service_urls

log = logging.getLogger("aftersales.console")

TOKEN_VARIABLE = "AFTERSALES_CONSOLE_TOKEN"  # noqa: S105 (the variable's name)
SERVICES_VARIABLE = "AFTERSALES_CONSOLE_SERVICES"
# A token shorter than this is refused: it guards replays into the production topics.
TOKEN_MIN_LENGTH = 16
DEFAULT_PORT = 8080


def development_token() -> str:
    return secrets.token_urlsafe(24)


def console_config(
    environ: Mapping[str, str], settings: Settings, known: Sequence[str]
) -> ConsoleConfig:
    """The console's configuration; ValueError (one line) names what is missing or wrong.

    Outside development mode a token and the services' URLs are required; in development mode
    (AFTERSALES_DEV_MODE) a token is made up and printed, and the services are the local
    process on AFTERSALES_HTTP_PORT."""
    dev_mode = settings.aftersales_dev_mode
    token = _required(
        environ,
        TOKEN_VARIABLE,
        "the console does not start without a login token (outside development mode)",
        development_token if dev_mode else None,
    )
    if len(token) < TOKEN_MIN_LENGTH and not dev_mode:
        raise ValueError(
            f"{TOKEN_VARIABLE} is too short: use at least {TOKEN_MIN_LENGTH} characters"
        )
    urls_text = _required(
        environ,
        SERVICES_VARIABLE,
        "name each service's read API, e.g. "
        "returns=http://returns:8000,refunds=http://refunds:8000,...",
        (lambda: f"http://127.0.0.1:{settings.aftersales_http_port}") if dev_mode else None,
    )
    urls = parse_service_urls(urls_text, known)
    return ConsoleConfig(token=token, services=Services(urls))


def _required(
    environ: Mapping[str, str],
    variable: str,
    why: str,
    development: Callable[[], str] | None,
) -> str:
    """The variable's value; where it is unset or blank, what `development` makes up, or
    without it a ValueError saying `why` it is needed."""
    value = environ.get(variable, "").strip()
    if value:
        return value
    if development is None:
        raise ValueError(f"{variable} is not set: {why}")
    return development()


def console_server(config: ConsoleConfig, port: int, host: str = "0.0.0.0") -> HttpServer:  # noqa: S104
    return HttpServer(
        uvicorn.Config(
            console_app(config),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,  # request lines would carry search terms (buyer ids) to the log
        )
    )


async def serve_console(config: ConsoleConfig, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = console_server(config, port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    log.info(
        "console serving",
        extra={
            "port": port,
            "services": ",".join(f"{k}={v}" for k, v in config.services.urls.items()),
        },
    )
    await server.serve()
