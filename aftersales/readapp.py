"""The services' read routes (shared/messaging/readapi.py) as FastAPI routes: served by
aftersales/http.py and documented by aftersales/openapi.py.

A route's function becomes the endpoint as it is: its parameters and docstring make the
OpenAPI operation, each `Param` turned into FastAPI's `Query`, and the library's errors into
HTTP answers.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict
from typing import Annotated, Any, get_args, get_origin

from fastapi import APIRouter, HTTPException, Query

from shared.messaging.readapi import BadParameter, NotFound, Param, ReadRoute


def router(service: str, routes: Iterable[ReadRoute]) -> APIRouter:
    """One service's read API, under /<service>/api."""
    api = APIRouter(prefix=f"/{service}/api", tags=[service])
    for route in routes:
        api.add_api_route(
            route.path,
            endpoint(route.run),
            methods=[route.method],
            response_model=route.answer,
            summary=route.summary,
        )
    return api


def endpoint(run: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(run)
    async def answer(**arguments: Any) -> Any:
        try:
            return await run(**arguments)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except BadParameter as exc:
            raise HTTPException(422, str(exc)) from exc

    # FastAPI reads the parameters from the signature: the route's, with FastAPI's own markers.
    signature = inspect.signature(run, eval_str=True)
    parameters = [p.replace(annotation=_query(p.annotation)) for p in signature.parameters.values()]
    answer.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters,
        return_annotation=inspect.Signature.empty,
    )
    return answer


def _query(annotation: Any) -> Any:
    if get_origin(annotation) is not Annotated:
        return annotation
    base, *marks = get_args(annotation)
    queries = [Query(**_bounds(m)) if isinstance(m, Param) else m for m in marks]
    return Annotated[(base, *queries)]


def _bounds(param: Param) -> dict[str, Any]:
    return {name: value for name, value in asdict(param).items() if value is not None}
