"""docs/rules.md stays true: every rule names code and a test, and every reference exists."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "rules.md"
REFERENCE = re.compile(r"`([\w./-]+\.py)::([\w.]+)`")


def _rows() -> list[tuple[str, str, str]]:
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and line.startswith("|") and cells[0] not in ("Rule", "---"):
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def _references() -> list[tuple[str, str]]:
    return sorted(set(REFERENCE.findall(DOC.read_text(encoding="utf-8"))))


@cache
def _names(path: str) -> frozenset[str]:
    """Module-level functions, classes and assignments, and `Class.method` names."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            names.update(
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return frozenset(names)


def test_the_doc_lists_rules_of_every_section():
    text = DOC.read_text(encoding="utf-8")
    for heading in ("## 4. Returns", "## 4.11", "## 5. Complaints", "## 6. ", "## 8. Policy"):
        assert heading in text
    assert len(_rows()) >= 30


@pytest.mark.parametrize("rule", _rows(), ids=lambda row: row[0][:40])
def test_every_rule_names_its_code_and_its_test(rule):
    _, code, proof = rule
    code_refs = REFERENCE.findall(code)
    test_refs = REFERENCE.findall(proof)
    assert code_refs and all(not path.startswith("tests/") for path, _ in code_refs)
    assert test_refs and all(
        path.startswith("tests/") and name.startswith("test_") for path, name in test_refs
    )


@pytest.mark.parametrize("reference", _references(), ids=lambda ref: f"{ref[0]}::{ref[1]}")
def test_every_reference_exists(reference):
    path, name = reference
    assert (ROOT / path).is_file(), f"docs/rules.md names a missing file {path}"
    assert name in _names(path), f"docs/rules.md names {path}::{name}, which is not there"
