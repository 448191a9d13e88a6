"""Read routes declared without a web framework, served by FastAPI: parameters, bounds, body
and the library's errors as HTTP answers."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from aftersales.readapp import router
from shared.messaging.readapi import BadParameter, NotFound, Param, ReadRoute


class Echo(BaseModel):
    text: str
    times: int


async def echo(
    text: str, times: Annotated[int, Param(ge=1, le=3, description="how often")] = 1
) -> Echo:
    """Say it again."""
    if text == "missing":
        raise NotFound("no such text")
    if text == "odd" and times % 2:
        raise BadParameter("odd text wants even times")
    return Echo(text=text * times, times=times)


async def posted(request: Echo) -> Echo:
    return Echo(text=request.text.upper(), times=request.times)


def client() -> httpx.AsyncClient:
    app = FastAPI()
    routes = [
        ReadRoute("/echo/{text}", echo, Echo, "Echo"),
        ReadRoute("/echo", posted, Echo, "Echo a body", "POST"),
    ]
    app.include_router(router("demo", routes))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_parameters_bounds_and_body_are_served() -> None:
    async with client() as http:
        said = await http.get("/demo/api/echo/ab", params={"times": 2})
        assert said.json() == {"text": "abab", "times": 2}
        assert (await http.get("/demo/api/echo/ab", params={"times": 4})).status_code == 422
        body = await http.post("/demo/api/echo", json={"text": "ab", "times": 1})
        assert body.json() == {"text": "AB", "times": 1}


async def test_library_errors_become_404_and_422() -> None:
    async with client() as http:
        missing = await http.get("/demo/api/echo/missing")
        assert (missing.status_code, missing.json()) == (404, {"detail": "no such text"})
        odd = await http.get("/demo/api/echo/odd")
        assert (odd.status_code, odd.json()) == (422, {"detail": "odd text wants even times"})


def test_the_document_has_the_route_s_name_description_and_bounds() -> None:
    app = FastAPI()
    app.include_router(router("demo", [ReadRoute("/echo/{text}", echo, Echo, "Echo")]))
    operation = app.openapi()["paths"]["/demo/api/echo/{text}"]["get"]
    assert (operation["operationId"], operation["description"]) == (
        "echo_demo_api_echo__text__get",
        "Say it again.",
    )
    [_, times] = operation["parameters"]
    assert times["description"] == "how often"
    assert (times["schema"]["minimum"], times["schema"]["maximum"]) == (1, 3)
