"""`aftersales run` takes one service, several, or all (SPEC 9)."""

import pytest

from aftersales.registry import SERVICES, service_names


def test_several_services_run_together_in_registry_order_each_once() -> None:
    assert service_names("refunds", "returns", "refunds") == ["returns", "refunds"]


def test_all_is_every_service_the_refund_ledger_included() -> None:
    assert service_names("all") == list(SERVICES)
    assert service_names() == list(SERVICES)
    assert "refunds" in service_names("all")
    assert service_names("returns", "all") == list(SERVICES)


def test_an_unknown_name_is_one_clear_error_naming_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown service 'refundz'; known: returns, .*refunds, all"
    ):
        service_names("returns", "refundz")


def test_run_without_a_service_runs_the_one_the_image_is_built_for(monkeypatch) -> None:
    from aftersales.commands.serving import services_to_run as _services_to_run

    monkeypatch.setenv("AFTERSALES_SERVICE", "notifier")
    assert _services_to_run([]) == ["notifier"]
    assert _services_to_run(["returns"]) == ["returns"]  # a service named wins
    monkeypatch.delenv("AFTERSALES_SERVICE")
    with pytest.raises(ValueError, match="name the services to run"):
        _services_to_run([])


def test_every_service_has_its_migrations_registered() -> None:
    from shared.migrations import migrations_of

    for name in SERVICES:
        assert (migrations_of(name) / "env.py").is_file(), name
    with pytest.raises(ValueError, match="no migrations registered"):
        migrations_of("warehouse")
