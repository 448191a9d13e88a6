"""CI's fault-injection run: `python -m faults.run --quick` (a few hundred flows, ~25 s of
chaos: services SIGKILLed, stopped and paused, PostgreSQL restarted, broker connections cut)
must reconcile without a discrepancy. `make faults` is the full run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aftersales_dev.devenv import find_postgres_bindir

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]


def test_quick_fault_run_reconciles(tmp_path: Path) -> None:
    env = dict(os.environ)
    # Its own broker (behind the proxy it cuts) and its own PostgreSQL (which it restarts);
    # a configured database only when there are no server binaries to start one.
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    if find_postgres_bindir() is not None:
        env.pop("DATABASE_URL", None)
    elif not env.get("DATABASE_URL"):
        pytest.skip("no PostgreSQL server binaries and no DATABASE_URL")
    report = tmp_path / "faults.md"
    result = subprocess.run(
        [sys.executable, "-m", "faults.run", "--quick", "--report", str(report)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = result.stdout + result.stderr[-6000:]
    assert result.returncode == 0, output
    text = report.read_text()
    assert "**Result: PASS**" in text
    assert "| refunds missing | 0 |" in text
    # The follow-up service and the notifier ran too and were reconciled.
    assert "| closed cases with a callback |" in text
    assert "| callbacks scheduled twice (several event ids) | 0 |" in text
    assert "| notifications with a wrong or repeated outcome | 0 |" in text
