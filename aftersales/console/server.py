"""`aftersales console`: its configuration from the environment, and serving it."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from collections.abc import Mapping, Sequence

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
    token = environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        if not settings.aftersales_dev_mode:
            raise ValueError(
                f"{TOKEN_VARIABLE} is not set: the console does not start without a login token "
                "(outside development mode)"
            )
        token = development_token()
    elif len(token) < TOKEN_MIN_LENGTH and not settings.aftersales_dev_mode:
        raise ValueError(
            f"{TOKEN_VARIABLE} is too short: use at least {TOKEN_MIN_LENGTH} characters"
        )
    urls_text = environ.get(SERVICES_VARIABLE, "").strip()
    if not urls_text:
        if not settings.aftersales_dev_mode:
            raise ValueError(
                f"{SERVICES_VARIABLE} is not set: name each service's read API, e.g. "
                "returns=http://returns:8000,refunds=http://refunds:8000,..."
            )
        urls_text = f"http://127.0.0.1:{settings.aftersales_http_port}"
    urls = parse_service_urls(urls_text, known)
    return ConsoleConfig(token=token, services=Services(urls))


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
