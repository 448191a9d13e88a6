"""Deployment artefacts stay in step with the code: metric names, services, manifests."""

import base64
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from sqlalchemy.engine import make_url

import services.followup.metrics
import services.refunds.metrics  # noqa: F401
import shared.metrics  # noqa: F401  (registers the metrics)
from aftersales.console.server import console_config
from aftersales.registry import SERVICES, preflight
from shared.crypto import cipher_from_env
from shared.messaging.runtime import RETRY_BACKOFF_CAP, kafka_security
from shared.policy import load_policy
from shared.settings import Settings

ALL_SERVICES = tuple(SERVICES)
# What the cluster's Secret gives the console in production (the overlay has no Secret there).
CLUSTER_TOKEN = {"AFTERSALES_CONSOLE_TOKEN": "a-token-the-cluster-secret-holds"}

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


def test_one_dockerfile_builds_every_service_with_its_extra_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    assert not list((ROOT / "services").glob("*/Dockerfile"))
    assert '".[${SERVICE}]"' in text and "AFTERSALES_SERVICE=${SERVICE}" in text
    assert 'CMD ["run"]' in text and "USER 10001" in text
    copied = [line for line in text.splitlines() if line.startswith("COPY")]
    assert not any("aftersales_dev" in line for line in copied)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(ALL_SERVICES) <= set(project["optional-dependencies"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("overlay", ["development", "production"])
def test_overlays_render_with_every_service(overlay):
    docs = _rendered(overlay)
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert deployments == {f"aftersales-{s}" for s in ALL_SERVICES} | {"aftersales-console"}
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


def _alert_groups() -> dict[str, list[dict[str, Any]]]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    return {group["name"]: group["rules"] for group in rules["groups"]}


def test_every_alert_group_has_a_promtool_test_that_makes_each_of_its_alerts_fire():
    tests = DEPLOY / "prometheus" / "tests"
    for group, rules in _alert_groups().items():
        path = tests / f"{group}.test.yaml"
        assert path.exists(), f"no promtool test for alert group {group}"
        spec = yaml.safe_load(path.read_text())
        fired = {
            case["alertname"]
            for test in spec["tests"]
            for case in test["alert_rule_test"]
            if case["exp_alerts"]
        }
        assert fired == {rule["alert"] for rule in rules}, group
    assert {p.name for p in tests.glob("*.yaml")} == {f"{g}.test.yaml" for g in _alert_groups()}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) not installed")
def test_alert_rules_pass_promtool():
    alerts = DEPLOY / "prometheus" / "alerts.yaml"
    for command in (
        ["promtool", "check", "rules", str(alerts)],
        ["promtool", "test", "rules", *map(str, sorted((alerts.parent / "tests").glob("*.yaml")))],
    ):
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_transient_retry_alert_fires_for_one_instance_retrying_at_the_backoff_cap():
    rule = next(
        rule
        for rules in _alert_groups().values()
        for rule in rules
        if rule["alert"] == "AftersalesTransientRetries"
    )
    match = re.search(r"\)\s*>\s*([0-9.]+)\s*/\s*([0-9.]+)\s", rule["expr"])
    assert match, rule["expr"]
    threshold = float(match[1]) / float(match[2])
    # One instance stuck on a fault retries once per cap (plus the fetch): the rate must be
    # well above the threshold, or the alert would never fire however long the fault lasts.
    one_instance = 1 / (RETRY_BACKOFF_CAP + 5)
    assert threshold < one_instance
    assert threshold >= 1 / 300  # but a retry every few minutes is not a stuck service


def _rendered(overlay: str) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "kubernetes" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def _container_environment(
    docs: list[dict[str, Any]], deployment: dict[str, Any]
) -> dict[str, str]:
    """The environment a Deployment's container gets from the overlay's own ConfigMaps and
    Secrets (a Secret the cluster provides, as in production, is left out)."""
    configmaps = {
        d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
    }
    secrets = {
        d["metadata"]["name"]: {
            k: base64.b64decode(v).decode("utf-8") for k, v in d.get("data", {}).items()
        }
        for d in docs
        if d["kind"] == "Secret"
    }
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"].get("secretKeyRef") or item["valueFrom"].get("configMapKeyRef")
        if ref is None:
            continue
        store = secrets if "secretKeyRef" in item["valueFrom"] else configmaps
        if ref["name"] in store and ref["key"] in store[ref["name"]]:
            env[item["name"]] = store[ref["name"]][ref["key"]]
        else:
            assert ref.get("optional") or ref["name"] not in store, (item["name"], ref)
    return env


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("overlay", ["development", "production"])
def test_overlay_values_are_valid_settings_for_every_service(overlay, tmp_path, monkeypatch):
    docs = _rendered(overlay)
    policies = [d for d in docs if d["kind"] == "ConfigMap" and "policy.toml" in d.get("data", {})]
    assert len(policies) == 1
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(policies[0]["data"]["policy.toml"])
    load_policy(str(policy_file))
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        service = deployment["metadata"]["name"].removeprefix("aftersales-")
        env = _container_environment(docs, deployment)
        env["AFTERSALES_POLICY_FILE"] = str(policy_file)
        for name in list(os.environ):
            if name.startswith(("KAFKA_", "AFTERSALES_", "DATABASE_")):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = Settings()  # the same validation as at start-up
        for server in settings.kafka_bootstrap_servers.split(","):
            host, _, port = server.rpartition(":")
            assert host and port.isdigit(), (service, server)
        kafka_security(settings)  # a known protocol and SASL mechanism
        if "DATABASE_URL" in env:  # generated here (development), else the cluster's Secret
            url = make_url(settings.database_url)
            assert url.host and url.database, service
        if "AFTERSALES_ENCRYPTION_KEY" in env:
            cipher_from_env(env["AFTERSALES_ENCRYPTION_KEY"])  # decodes to 32-byte keys
        if service == "console":
            # Its token (the cluster's Secret in production) and every service's read API.
            config = console_config({**CLUSTER_TOKEN, **env}, settings, ALL_SERVICES)
            assert set(config.services.urls) == set(ALL_SERVICES)
            continue
        if overlay == "development":
            # Everything the service needs is in the overlay: its own start-up checks pass.
            preflight(service, settings)


def _digits_groups() -> dict[int, list[str]]:
    """Every ISO 4217 currency by its minor-unit digits, as shared.money counts them."""
    from babel.numbers import list_currencies

    from shared.money import is_known_currency, minor_digits

    groups: dict[int, list[str]] = {}
    for code in sorted(list_currencies()):
        if is_known_currency(code):
            groups.setdefault(minor_digits(code), []).append(code)
    return groups


def major_units_expr(metric: str, window: str) -> str:
    """PromQL of a `*_minor_total` counter's increase per currency in major units: each
    currency divided by 10 to the power of its own digits (JPY 0, CNY 2, KWD 3)."""
    groups = _digits_groups()
    others = "|".join(code for d, codes in groups.items() if d != 2 for code in codes)
    parts = [
        f'sum by (currency) (increase({metric}{{service=~"$service",currency!~"{others}"}}'
        f"[{window}])) / 100"
    ]
    for digits, codes in sorted(groups.items()):
        if digits == 2:
            continue
        scale = f" / {10**digits}" if digits else ""
        parts.append(
            f'sum by (currency) (increase({metric}{{service=~"$service",'
            f'currency=~"{"|".join(codes)}"}}[{window}])){scale}'
        )
    return "\n  or ".join(parts)


def _dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "aftersales-dashboard.json").read_text())


def test_every_dashboard_query_follows_the_service_variable():
    for panel in _dashboard()["panels"]:
        for target in panel["targets"]:
            assert "$service" in target["expr"], panel["title"]


def test_money_panels_show_each_currency_with_its_own_digits():
    money = [
        target
        for panel in _dashboard()["panels"]
        for target in panel["targets"]
        if "_minor_total" in target["expr"]
    ]
    assert len(money) >= 3
    for target in money:
        [metric] = set(re.findall(r"\b(aftersales_[a-z_]+_minor_total)", target["expr"]))
        [window] = set(re.findall(r"\[(\d+[smhd])\]", target["expr"]))
        assert target["expr"] == major_units_expr(metric, window)
    groups = _digits_groups()
    assert "JPY" in groups[0] and "CNY" in groups[2] and "KWD" in groups[3]


def test_the_dashboard_has_consumer_lag_and_cpu_per_service():
    exprs = [t["expr"] for panel in _dashboard()["panels"] for t in panel["targets"]]
    assert any("aftersales_consumer_lag" in e for e in exprs)
    [cpu] = [e for e in exprs if "process_cpu_seconds_total" in e]
    assert "aftersales_service_running" in cpu and "sum by (service)" in cpu


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) not installed")
def test_every_dashboard_query_is_valid_promql(tmp_path):
    exprs = [t["expr"] for panel in _dashboard()["panels"] for t in panel["targets"]]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{n}", "expr": e.replace("$service", "returns")}
                    for n, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _overlay_tag(overlay: str) -> str:
    spec = yaml.safe_load(
        (DEPLOY / "kubernetes" / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    [tag] = {image["newTag"] for image in spec["images"]}
    return str(tag)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("overlay", ["development", "production"])
def test_each_release_has_a_migration_job_of_its_own_that_cleans_itself_up(overlay):
    [job] = [d for d in _rendered(overlay) if d["kind"] == "Job"]
    assert job["metadata"]["name"] == "aftersales-migrate-" + _overlay_tag(overlay).replace(
        ".", "-"
    )
    assert 0 < job["spec"]["ttlSecondsAfterFinished"] <= 86400


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("overlay", ["development", "production"])
def test_network_policies_admit_scraping_and_reach_dns_kafka_postgres_and_the_gateways(overlay):
    docs = _rendered(overlay)
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    }

    def selects(spec: dict[str, Any], labels: dict[str, str]) -> bool:
        return spec["podSelector"]["matchLabels"].items() <= labels.items()

    def ports(rules: list[dict[str, Any]]) -> set[int]:
        return {port["port"] for rule in rules for port in rule.get("ports", [])}

    every = policies["aftersales"]
    assert all(selects(every, labels) for labels in pods.values())
    assert set(every["policyTypes"]) == {"Ingress", "Egress"}
    assert ports(every["ingress"]) == {8000}
    assert {53, 9092, 9093, 5432} <= ports(every["egress"])
    gateways = policies["aftersales-notifier-gateways"]
    assert [name for name, labels in pods.items() if selects(gateways, labels)] == [
        "aftersales-notifier"
    ]
    assert {443, 465, 587} <= ports(gateways["egress"])


def test_every_service_s_manifests_come_from_the_one_template():
    for name in ALL_SERVICES:
        spec = yaml.safe_load(
            (DEPLOY / "kubernetes" / "base" / "services" / name / "kustomization.yaml").read_text()
        )
        assert spec["resources"] == ["../../../service"], name
        assert spec["nameSuffix"] == f"-{name}"
