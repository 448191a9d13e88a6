"""docs/contract.md: every topic, event, field and dead-letter reason, in step with the models."""

import re
from pathlib import Path

from pydantic import BaseModel

from aftersales import contract_doc
from shared.contracts import EVENT_TYPES, topics
from shared.contracts.events import PLATFORM_TOPIC_TYPES, SERVICE_TOPIC_TYPES
from shared.contracts.outputs import DEAD_LETTER_REASONS
from shared.contracts.primitives import EventData, Money

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "contract.md"


def _paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field path of a model, walked independently of the generator."""
    out = []
    for name, info in model.model_fields.items():
        out.append(prefix + name)
        text = repr(info.annotation)
        for nested in (*EVENT_TYPES.values(), *_nested_models()):
            if re.search(rf"\b{nested.__name__}\b", text):
                sep = "[]." if text.startswith("list") or "list[" in text else "."
                out += _paths(nested, prefix + name + sep)
                break
    return out


def _nested_models() -> list[type[BaseModel]]:
    from shared.contracts import inputs, outputs

    return [
        obj
        for module in (inputs, outputs)
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, EventData) and obj is not EventData
    ]


def _section(text: str, event_type: str) -> str:
    """The table under the heading that names `event_type` (or the one it refers to)."""
    heading = re.search(rf"^#### .*`{re.escape(event_type)}`.*$", text, re.M)
    assert heading is not None, f"docs/contract.md has no heading for {event_type}"
    rest = text[heading.end() :]
    stop = re.search(r"^#{1,4} ", rest, re.M)
    return rest[: stop.start()] if stop else rest


def test_the_committed_document_is_up_to_date():
    assert contract_doc.main(["--check", "--doc", str(DOC)]) == 0


def test_every_field_of_every_event_is_listed_with_a_meaning():
    text = DOC.read_text(encoding="utf-8")
    tables = {}
    for event_type, model in EVENT_TYPES.items():
        section = _section(text, event_type)
        if "listed above" in section:
            section = tables[model]
        tables[model] = section
        for path in _paths(model):
            row = re.search(rf"^\| `{re.escape(path)}` \|(.*)\|(.*)\|(.*)\|$", section, re.M)
            assert row is not None, f"{event_type}: field {path} is not in docs/contract.md"
            assert row.group(3).strip() not in ("", "(not written)"), f"{event_type}.{path}"


def test_every_topic_and_dead_letter_reason_is_described():
    text = DOC.read_text(encoding="utf-8")
    for topic in (*PLATFORM_TOPIC_TYPES, *SERVICE_TOPIC_TYPES, f"{topics.DEAD_LETTER_PREFIX}"):
        assert f"| `{topic}" in text, topic
    for reason in DEAD_LETTER_REASONS:
        assert re.search(rf"^\| `{reason}` \| \S", text, re.M), reason


class _NewEvent(EventData):
    order_id: str
    brand_new_amount: Money


def test_a_field_without_a_written_meaning_is_reported():
    rows = {path: meaning for path, _, _, meaning in contract_doc.field_rows(_NewEvent, [])}
    assert rows["order_id"]
    assert rows["brand_new_amount"] is None


def test_a_stale_document_fails_the_check(tmp_path):
    stale = DOC.read_text(encoding="utf-8").replace("| `refund_id` |", "| `refund_no` |", 1)
    doc = tmp_path / "contract.md"
    doc.write_text(stale, encoding="utf-8")
    assert contract_doc.main(["--check", "--doc", str(doc)]) == 1
    assert contract_doc.main(["--doc", str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
