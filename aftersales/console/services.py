"""Where the console finds each service's read API, and asking them.

AFTERSALES_CONSOLE_SERVICES maps services to base URLs: `returns=http://returns:8000,
refunds=http://refunds:8000,...`, or one URL for all (`http://127.0.0.1:8000`, a process that
runs them all). In development it defaults to the local process (AFTERSALES_HTTP_PORT).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("aftersales.console")

# Seconds a service has to answer one request of a page.
TIMEOUT = 10.0


def parse_service_urls(text: str, known: Sequence[str]) -> dict[str, str]:
    """`name=url,...` (or one URL for every service) -> {service: base URL}; ValueError names
    what is wrong."""
    text = text.strip()
    if not text:
        raise ValueError("AFTERSALES_CONSOLE_SERVICES is empty; set service=URL,... ")
    if "=" not in text:
        _check_url(text)
        return dict.fromkeys(known, text.rstrip("/"))
    urls: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = part.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or name not in known:
            raise ValueError(
                f"AFTERSALES_CONSOLE_SERVICES: {part!r} is not service=URL with a service of "
                f"{', '.join(known)}"
            )
        _check_url(url)
        urls[name] = url.rstrip("/")
    return urls


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"AFTERSALES_CONSOLE_SERVICES: {url!r} is not an http(s) URL")


class ServiceUnavailable(Exception):
    """A service's read API did not answer (down, refused, timed out, or an error)."""


@dataclass
class Answers:
    """What each service answered, and which ones could not."""

    by_service: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


class Services:
    def __init__(self, urls: Mapping[str, str], client: httpx.AsyncClient | None = None) -> None:
        self.urls = dict(urls)
        self._client = client or httpx.AsyncClient(timeout=TIMEOUT)

    async def close(self) -> None:
        await self._client.aclose()

    def has(self, service: str) -> bool:
        return service in self.urls

    async def get(self, service: str, path: str, **params: Any) -> Any:
        return await self._call("GET", service, path, params=params)

    async def post(self, service: str, path: str, body: Mapping[str, Any]) -> Any:
        return await self._call("POST", service, path, json=dict(body))

    async def _call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        if service not in self.urls:
            raise ServiceUnavailable(f"{service} is not configured")
        params = {k: v for k, v in (kwargs.pop("params", None) or {}).items() if v is not None}
        url = f"{self.urls[service]}/{service}/api{path}"
        try:
            response = await self._client.request(method, url, params=params, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("service did not answer", extra={"service": service, "error": str(exc)})
            raise ServiceUnavailable(f"{service} did not answer ({type(exc).__name__})") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ServiceUnavailable(f"{service} answered {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise ServiceUnavailable(f"{service} answered something other than JSON") from None

    async def each(
        self, path: str, services: Sequence[str] | None = None, **params: Any
    ) -> Answers:
        """Ask every service (or those named) at once; one that fails is reported, not fatal."""
        names = [s for s in (services or list(self.urls)) if s in self.urls]
        results = await asyncio.gather(
            *(self.get(name, path, **params) for name in names), return_exceptions=True
        )
        answers = Answers()
        for name, result in zip(names, results, strict=True):
            if isinstance(result, ServiceUnavailable):
                answers.failed[name] = str(result)
            elif isinstance(result, BaseException):
                raise result
            elif result is not None:
                answers.by_service[name] = result
        return answers
