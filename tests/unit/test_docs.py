"""The README stays a five-minute start and the pages it sends to stay true: links resolve,
every setting and every alert (with its runbook) is in the operations page."""

import re
from pathlib import Path

import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_a_short_start_with_the_walk_through_and_where_to_go_next():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings == ["Two commands", "Send your own event", "Where to go next"]
    assert "make run" in text and "make test" in text
    assert "docs/examples/my-return.py | .venv/bin/aftersales send" in text
    for page in ("architecture", "contract", "operations", "finance", "development"):
        assert f"(docs/{page}.md)" in text, page


def test_every_relative_link_of_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *DOCS.glob("*.md")]
    for page in pages:
        for target in _LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_every_setting_is_documented_in_the_operations_page():
    text = (DOCS / "operations.md").read_text()
    for name in Settings.model_fields:
        assert f"`{name.upper()}`" in text or name.upper() in text, name.upper()


def test_every_alert_has_a_runbook_annotation_and_its_row_in_the_operations_page():
    text = (DOCS / "operations.md").read_text()
    groups = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())
    for rule in (rule for group in groups["groups"] for rule in group["rules"]):
        runbook = " ".join(rule["annotations"]["runbook"].split())
        [row] = [line for line in text.splitlines() if line.startswith(f"| `{rule['alert']}` |")]
        shown = runbook.replace("{{ $labels.namespace }}", "NAMESPACE").replace(
            "{{ $labels.pod }}", "POD"
        )
        assert row.endswith(f"| {shown} |"), rule["alert"]
