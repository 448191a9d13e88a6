"""`make test-kafka` runs the end-to-end tests against Apache Kafka in a container; where no
Docker engine answers they are skipped, saying why, rather than failing or running elsewhere."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_docker_engine_the_apache_kafka_suite_is_skipped_with_the_reason(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "AFTERSALES_"))}
    env.update(
        AFTERSALES_TEST_KAFKA="testcontainers",
        DOCKER_HOST=f"unix://{tmp_path / 'no-docker.sock'}",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "tests/e2e/test_send.py",
            "-k",
            "unreadable",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "no Docker engine reachable" in result.stdout
