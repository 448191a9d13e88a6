import json
from pathlib import Path

from aftersales.asyncapi import render_all, write_or_check
from aftersales.registry import SERVICES, definition
from shared.clock import SystemClock
from shared.policy import Policy

ROOT = Path(__file__).resolve().parents[2]


def _resolve(document, ref):
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_committed_documents_are_up_to_date():
    assert write_or_check(ROOT / "docs" / "asyncapi", check=True) == []


def test_every_reference_resolves_and_every_handled_type_is_described():
    for name, text in render_all().items():
        document = json.loads(text)
        assert document["asyncapi"].startswith("3.")
        for op in document["operations"].values():
            channel = _resolve(document, op["channel"]["$ref"])
            for message in op["messages"]:
                resolved = _resolve(document, message["$ref"])
                payload = _resolve(
                    document, _resolve(document, resolved["$ref"])["payload"]["$ref"]
                )
                _resolve(document, payload["properties"]["data"]["$ref"])
            assert channel["address"]
        described = {
            m
            for op in document["operations"].values()
            if op["action"] == "receive"
            for m in (ref["$ref"].rsplit("/", 1)[1] for ref in op["messages"])
        }
        handled = set(definition(name, Policy(), SystemClock()).handlers)
        assert handled <= described, f"{name}: handled but undocumented {handled - described}"


def _senders(event_type: str) -> list[str]:
    return sorted(
        name
        for name, text in render_all().items()
        for op in json.loads(text)["operations"].values()
        if op["action"] == "send"
        and any(ref["$ref"].endswith(f"/{event_type}") for ref in op["messages"])
    )


def test_refund_requests_are_documented_where_they_are_written():
    assert _senders("refund.requested") == ["complaints", "returns"]
    for name in ("returns", "complaints"):
        schema = json.loads(render_all()[name])["components"]["schemas"]["RefundRequested"]
        for field in ("refund_id", "order_id", "case", "amount", "breakdown", "due_by"):
            assert field in schema["properties"], (name, field)
        assert "payments" not in schema["properties"]  # the ledger splits


def test_refund_event_schema_names_what_finance_reads():
    # one writer of aftersales.refunds: the refund ledger (SPEC 3)
    assert _senders("refund.issued") == ["refunds"]
    document = json.loads(render_all()["refunds"])
    refund = document["components"]["schemas"]["RefundIssued"]
    for field in (
        "refund_id",
        "order_id",
        "customer_id",
        "case",
        "amount",
        "currency",
        "breakdown",
        "payments",
        "return_shipping_payer",
        "due_by",
        "issued_at",
    ):
        assert field in refund["properties"], field
    assert set(SERVICES) == set(render_all())


def test_check_fails_when_a_model_changed(tmp_path, monkeypatch, capsys):
    """What `make lint` relies on: a field added to a model makes `asyncapi --check` fail."""
    from argparse import Namespace

    from aftersales.commands.documents import asyncapi as _asyncapi
    from shared.contracts import EVENT_TYPES, outputs

    args = Namespace(dir=str(tmp_path), check=True)
    write_or_check(tmp_path, check=False)
    assert _asyncapi(args) == 0

    class RefundRequested(outputs.RefundRequested):
        settlement_batch: str | None = None

    monkeypatch.setitem(EVENT_TYPES, "refund.requested", RefundRequested)
    assert _asyncapi(args) == 1
    err = capsys.readouterr().err
    assert "AsyncAPI documents are stale" in err
    # the services that publish refund.requested
    assert "returns.json" in err and "complaints.json" in err
