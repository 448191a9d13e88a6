from pathlib import Path

import pytest

from shared.policy import FreeShippingDeduction, Policy, PolicyError, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]


def test_example_policy_file_holds_exactly_the_spec_defaults():
    assert load_policy(ROOT / "deploy" / "policy.example.toml") == Policy()


def test_defaults_match_the_spec():
    policy = Policy()
    assert policy.timezone == "Asia/Shanghai"
    assert policy.currency == "CNY"
    assert policy.returns.amounts_currency == policy.complaints.amounts_currency == "CNY"
    assert policy.returns.no_reason_days == 7
    assert policy.returns.quality_claim_days == 15
    assert policy.returns.evidence_wait_hours == 72
    assert policy.returns.signature_wait_hours == 48
    assert policy.returns.review_sla_working_hours == 12
    assert str(policy.returns.working_hours) == "09:00-18:00"
    assert policy.returns.return_shipping_cap == 3000
    assert policy.returns.free_shipping_deduction is FreeShippingDeduction.WHEN_THRESHOLD_BROKEN
    assert policy.returns.inspection_required_categories == {"electronics"}
    assert policy.returns.inspection_grace_hours == 20
    assert policy.returns.refund_deadline_hours == 24
    assert policy.complaints.late_shipment_rate_bp == 500
    assert policy.complaints.compensation_budget == 10000
    assert policy.followup.callback_delay_hours == 24
    assert str(policy.followup.quiet_hours) == "21:00-09:00"
    assert policy.notifier.max_non_urgent_per_day == 3


def test_overrides_are_read():
    policy = parse_policy(
        'timezone = "Europe/Berlin"\n[returns]\nfree_shipping_deduction = "always"\n'
        'working_hours = "08:30-17:00"\n'
    )
    assert policy.zone.key == "Europe/Berlin"
    assert policy.returns.free_shipping_deduction is FreeShippingDeduction.ALWAYS
    assert str(policy.returns.working_hours) == "08:30-17:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('timezone = "Mars/Olympus"', "timezone"),
        ("[returns]\nno_reason_days = 0", "returns.no_reason_days"),
        ('[returns]\nfree_shipping_deduction = "sometimes"', "returns.free_shipping_deduction"),
        ("[returns]\nno_reason_dayz = 7", "returns.no_reason_dayz"),
        ('[returns]\nworking_hours = "18:00-09:00"', "working_hours"),
        ('[returns]\nworking_hours = "nine to six"', "working_hours"),
        ("[followup]\ncallback_delay_hours = 80", "callback_delay_hours"),
        (
            "[notifier]\nretry_first_delay_seconds = 600\nretry_longest_delay_seconds = 60",
            "retry_longest_delay_seconds must be at least retry_first_delay_seconds",
        ),
        ("[returns\n", "not valid TOML"),
    ],
)
def test_bad_values_fail_with_a_clear_error_naming_the_key(text, expected):
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, origin="policy.toml")
    assert expected in str(caught.value)
    assert str(caught.value).startswith("policy.toml:")


# (file text, key named, what the message says is allowed)
STRICT_CASES = [
    ("[returns]\nno_reason_days = true", "returns.no_reason_days", "an integer from 1 to 30"),
    ('[returns]\nno_reason_days = "7"', "returns.no_reason_days", "an integer from 1 to 30"),
    ("[returns]\nno_reason_days = 7.0", "returns.no_reason_days", "an integer from 1 to 30"),
    ("[returns]\nno_reason_days = 2026-03-01", "returns.no_reason_days", "an integer"),
    ("[returns]\nquality_claim_days = 100000000", "returns.quality_claim_days", "1 to 365"),
    ("[returns]\nevidence_wait_hours = 0", "returns.evidence_wait_hours", "1 to 720"),
    ("[returns]\nreturn_shipping_cap = -1", "returns.return_shipping_cap", "0 to 100000000"),
    ("[returns]\nreturn_shipping_cap = 10000000000000", "returns.return_shipping_cap", "0 to"),
    (
        '[returns]\nfree_shipping_deduction = "sometimes"',
        "returns.free_shipping_deduction",
        "never, when_threshold_broken, always",
    ),
    (
        '[returns]\ninspection_required_categories = "electronics"',
        "returns.inspection_required_categories",
        "a list of product category names",
    ),
    (
        '[returns]\ninspection_required_categories = ["Home Appliances"]',
        "returns.inspection_required_categories",
        "lower-case",
    ),
    ('[returns]\nworking_hours = "09:00-18:00:30"', "returns.working_hours", "HH:MM-HH:MM"),
    ('[returns]\nworking_hours = "9-18"', "returns.working_hours", "HH:MM-HH:MM"),
    ('[returns]\nworking_hours = "24:00-09:00"', "returns.working_hours", "HH:MM-HH:MM"),
    ("[returns]\nworking_hours = 9", "returns.working_hours", "HH:MM-HH:MM"),
    (
        "[complaints]\nlate_shipment_rate_bp = 200000",
        "complaints.late_shipment_rate_bp",
        "0 to 10000 (basis points",
    ),
    ("[complaints]\nquality_issue_rate_bp = true", "complaints.quality_issue_rate_bp", "0 to"),
    (
        '[complaints]\ncomplex_categories = ["quality_isue"]',
        "complaints.complex_categories",
        "quality_issue, wrong_item",
    ),
    ("[complaints]\nfirst_response_hours = 8760", "complaints.first_response_hours", "1 to 168"),
    ("[complaints]\ncompensation_budget = -500", "complaints.compensation_budget", "0 to"),
    ('[followup]\nquiet_hours = "21:00-09:00:30"', "followup.quiet_hours", "HH:MM-HH:MM"),
    ('[followup]\nquiet_hours = "21:00-21:00"', "followup.quiet_hours", "start and end different"),
    ("[followup]\nlow_score_threshold = 6", "followup.low_score_threshold", "1 to 5"),
    ("[notifier]\nretry_max_attempts = false", "notifier.retry_max_attempts", "1 to 50"),
    ("timezone = 8", "timezone", "IANA time zone"),
    ('currency = "RMB"', "currency", "ISO 4217"),
    ('currency = "cny"', "currency", "ISO 4217"),
    ("currency = 156", "currency", "ISO 4217"),
    ("returns = 7", "returns", "a [returns] table"),
    (
        "no_reason_days = 7",
        "no_reason_days",
        "allowed in the top level: timezone, currency, returns",
    ),
    ("[returns]\nno_reason_dayz = 7", "returns.no_reason_dayz", "allowed in [returns]: "),
    ("[complaint]\nresolution_hours = 2", "complaint", "allowed in the top level"),
    ("[followup.extra]\nx = 1", "followup.extra", "allowed in [followup]"),
]


@pytest.mark.parametrize(("text", "key", "allowed"), STRICT_CASES)
def test_strict_validation_names_the_key_and_what_is_allowed_on_one_line(text, key, allowed):
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, origin="policy.toml")
    message = str(caught.value)
    assert message.startswith(f"policy.toml: {key}: ")
    assert allowed in message
    assert "\n" not in message and "Traceback" not in message


def test_several_bad_values_are_all_named_on_the_one_line():
    with pytest.raises(PolicyError) as caught:
        parse_policy("[returns]\nno_reason_days = 0\nquality_claim_days = true\n")
    message = str(caught.value)
    assert "returns.no_reason_days: got 0" in message
    assert "returns.quality_claim_days: got true" in message


@pytest.mark.parametrize(
    "path", ["deploy/policy.example.toml", "deploy/kubernetes/base/policy.toml"]
)
def test_the_shipped_policy_files_load_as_the_defaults(path):
    assert load_policy(ROOT / path) == Policy()


def test_the_policy_currency_is_the_currency_of_every_section_amount():
    policy = parse_policy('currency = "JPY"\n[returns]\nreturn_shipping_cap = 1500\n')
    assert (policy.returns.amounts_currency, policy.complaints.amounts_currency) == ("JPY", "JPY")
    with pytest.raises(PolicyError) as caught:
        parse_policy('[returns]\namounts_currency = "JPY"\n', origin="policy.toml")
    assert str(caught.value) == "policy.toml: returns.amounts_currency: unknown key; set `currency`"


def test_every_documented_range_edge_is_accepted():
    policy = parse_policy(
        "[returns]\nno_reason_days = 30\nquality_claim_days = 1\nreturn_shipping_cap = 0\n"
        "[complaints]\nlate_shipment_rate_bp = 10000\ncomplex_categories = []\n"
        '[followup]\nquiet_hours = "00:00-23:59"\nlow_score_threshold = 5\n'
    )
    assert policy.returns.no_reason_days == 30
    assert policy.complaints.late_shipment_rate_bp == 10000
    assert policy.complaints.complex_categories == frozenset()


def test_the_cli_reports_a_bad_policy_in_one_line_without_a_traceback(tmp_path, capsys):
    from aftersales.cli import main

    bad = tmp_path / "policy.toml"
    bad.write_text("[returns]\nno_reason_days = true\n", encoding="utf-8")
    assert main(["policy", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"aftersales: {bad}: returns.no_reason_days: got true; "
        "allowed: an integer from 1 to 30 days"
    )


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "nope.toml")


def test_no_file_means_defaults():
    assert load_policy(None) == Policy()
