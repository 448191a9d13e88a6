"""Deployment artefacts stay in step with the code: metric names, services, manifests."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import services.followup.metrics
import services.refunds.metrics  # noqa: F401
import shared.metrics  # noqa: F401
from shared.bootstrap import SERVICES

ALL_SERVICES = tuple(SERVICES)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(aftersales_[a-z_]+)", expr))


def _known_metrics() -> set[str]:
    names = set()
    for collector in list(REGISTRY._collector_to_names):
        for metric in collector.describe() if hasattr(collector, "describe") else []:
            names.add(metric.name)
            for suffix in ("_total", "_bucket", "_count", "_sum", "_created"):
                names.add(metric.name + suffix)
    return names


def test_alert_rules_use_metrics_the_code_exports():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    known = _known_metrics()
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"AftersalesSlaBreached", "AftersalesOutboxLag", "AftersalesDeadLetters"} <= {
        rule["alert"] for rule in alerts
    }
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert _metric_names_in(rule["expr"]) <= known, rule["alert"]


def test_dashboard_uses_metrics_the_code_exports():
    dashboard = json.loads((DEPLOY / "grafana" / "aftersales-dashboard.json").read_text())
    known = _known_metrics()
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    for expr in exprs:
        assert _metric_names_in(expr) <= known, expr


def test_every_service_has_a_dockerfile_running_it_as_non_root():
    for service in ALL_SERVICES:
        text = (ROOT / "services" / service / "Dockerfile").read_text()
        assert f'CMD ["run", "{service}"]' in text
        assert f'".[{service}]"' in text
        assert "USER 10001" in text


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("overlay", ["development", "production"])
def test_overlays_render_with_every_service(overlay):
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "kubernetes" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert deployments == {f"aftersales-{s}" for s in ALL_SERVICES}
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        container = pod["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["resources"]["limits"] and container["resources"]["requests"]
    assert any(
        d["kind"] == "Job"
        and d["spec"]["template"]["spec"]["containers"][0]["args"][0] == "migrate"
        for d in docs
    )
