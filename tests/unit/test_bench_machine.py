"""The benchmark's account of where the machine's CPU went: the servers' processes counted with
the children they reaped, and the table per input event."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.measure import Result, cpu_seconds, tree_cpu_seconds
from bench.report import machine_rows

BURN = "import time\nwhile time.process_time() < 0.3: pass"


def test_a_process_tree_counts_the_cpu_of_children_that_came_and_went() -> None:
    before = tree_cpu_seconds(os.getpid())
    subprocess.run([sys.executable, "-c", BURN], check=True)  # a child, run and reaped
    assert tree_cpu_seconds(os.getpid()) - before >= 0.25


def test_a_process_tree_counts_its_live_children() -> None:
    me = os.getpid()
    before, mine = tree_cpu_seconds(me), cpu_seconds(me)
    child = subprocess.Popen(
        [sys.executable, "-c", BURN + "\nprint('burnt', flush=True)\ninput()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"burnt\n"  # still running, not reaped
        children = tree_cpu_seconds(me) - before - (cpu_seconds(me) - mine)
    finally:
        child.communicate(b"\n")
    assert children >= 0.25


def test_an_unknown_process_counts_nothing() -> None:
    assert tree_cpu_seconds(None) == 0.0


def test_the_table_gives_each_part_per_input_event_and_their_sum() -> None:
    measured = Result("pipeline", events=1000, cpu_seconds=0.2)
    measured.server_cpu = {"PostgreSQL": 0.15, "broker": 0.03}
    elsewhere = Result("on a configured server", events=1000, cpu_seconds=0.1)  # not measured
    rows = machine_rows([measured, elsewhere])
    assert rows[0] == "| consumer | its processes | PostgreSQL | broker | together |"
    assert rows[2:] == ["| pipeline | 200 | 150 | 30 | 380 |"]
    assert machine_rows([elsewhere]) == []
