"""`aftersales record --since/--until`: local dates in the policy's time zone or instants with
an offset; anything else is one line naming the option."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from aftersales.cli import main
from aftersales.simulation.commands import instant
from aftersales.simulation.history import Progress
from shared.policy import Policy


def test_a_date_is_local_midnight_and_until_includes_the_day() -> None:
    policy = Policy()  # Asia/Shanghai
    assert instant("2026-03-01", policy, "--since") == datetime(2026, 2, 28, 16, tzinfo=UTC)
    until = instant("2026-03-31", policy, "--until", end_of_day=True)
    assert until == datetime(2026, 3, 31, 16, tzinfo=UTC)


def test_an_instant_keeps_its_offset() -> None:
    at = instant("2026-03-01T08:30:00+08:00", Policy(), "--since")
    assert at == datetime(2026, 3, 1, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "March"], "--since: 'March' is neither a date"),
        (["--since", "2026-03-01T08:00:00"], "--since: '2026-03-01T08:00:00' has no UTC offset"),
        (["--since", "2026-03-02", "--until", "2026-03-01"], "--until must come after --since"),
    ],
)
def test_a_bad_period_is_one_line(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch, args: list[str], message: str
) -> None:
    monkeypatch.delenv("AFTERSALES_POLICY_FILE", raising=False)
    assert main(["record", "--out", str(tmp_path / "out.jsonl"), *args]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert message in line
    assert not (tmp_path / "out.jsonl").exists()


def test_the_closing_progress_line_reads_as_a_sentence() -> None:
    out = io.StringIO()
    progress = Progress("recorded", out=out)
    progress.step(19)
    progress.done(" records written to march.jsonl")
    assert out.getvalue().splitlines()[-1] == "recorded: 19 records written to march.jsonl, done"


def test_an_output_file_that_cannot_be_written_is_one_line_naming_it(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.delenv("AFTERSALES_POLICY_FILE", raising=False)
    out = tmp_path / "no-such-folder" / "march.jsonl"
    assert main(["record", "--out", str(out)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"aftersales: record: cannot write {out}: No such file or directory"
