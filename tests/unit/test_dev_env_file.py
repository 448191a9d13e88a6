"""`make run` leaves the broker's and database's addresses in .run/env for a second shell."""

import os
import subprocess

from aftersales_dev.dev import write_env_file


def test_the_env_file_exports_what_a_second_shell_needs_readable_by_its_owner_only(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:39092")
    monkeypatch.setenv("KAFKA_IDEMPOTENCE", "false")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://me@/db?host=/tmp/a b")
    path = write_env_file(tmp_path)

    assert os.stat(path).st_mode & 0o777 == 0o600
    shell = subprocess.run(
        [
            "sh",
            "-c",
            f'. "{path}" && printf "%s|%s|%s" "$KAFKA_BOOTSTRAP_SERVERS" '
            '"$KAFKA_IDEMPOTENCE" "$DATABASE_URL"',
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert shell.stdout == "127.0.0.1:39092|false|postgresql+asyncpg://me@/db?host=/tmp/a b"
