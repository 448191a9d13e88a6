"""Each service's read API is documented (OpenAPI from its routes and pydantic models), and the
committed documents in docs/openapi/ are those the code generates."""

from __future__ import annotations

from pathlib import Path

from aftersales.openapi import document, render_all
from aftersales.registry import SERVICES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"
COMMON = {
    "/{s}/api/cases": "get",
    "/{s}/api/cases/{{case_type}}/{{case_id}}/timeline": "get",
    "/{s}/api/deadlines": "get",
    "/{s}/api/dead-letters": "get",
    "/{s}/api/dead-letters/replay": "post",
}
KPIS = {"returns", "complaints", "followup", "refunds"}


def test_every_service_documents_its_read_api() -> None:
    for service in SERVICES:
        doc = document(service)
        paths = doc["paths"]
        assert isinstance(paths, dict)
        for template, method in COMMON.items():
            assert method in paths[template.format(s=service)], (service, template)
        assert (f"/{service}/api/kpis" in paths) == (service in KPIS), service
        schemas = doc["components"]["schemas"]  # type: ignore[index]
        entry = schemas["TimelineEntry"]["properties"]
        assert {"rule", "message", "message_en", "kind", "at"} <= set(entry)
        # Buyers by customer_id only: no field of any answer names contact data.
        fields = {name for schema in schemas.values() for name in schema.get("properties", {})}
        assert not fields & {"phone", "email", "address", "recipient", "customer"}, service
    ledger = document("refunds")["paths"]["/refunds/api/orders/{order_id}/ledger"]  # type: ignore[index]
    answer = ledger["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/Ledger"}


def test_the_committed_documents_are_current() -> None:
    for service, text in render_all().items():
        path = DOCS / f"{service}.json"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: aftersales openapi"
