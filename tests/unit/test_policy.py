from pathlib import Path

import pytest

from shared.policy import FreeShippingDeduction, Policy, PolicyError, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]


def test_example_policy_file_holds_exactly_the_spec_defaults():
    assert load_policy(ROOT / "deploy" / "policy.example.toml") == Policy()


def test_defaults_match_the_spec():
    policy = Policy()
    assert policy.timezone == "Asia/Shanghai"
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
        ("[returns\n", "not valid TOML"),
    ],
)
def test_bad_values_fail_with_a_clear_error_naming_the_key(text, expected):
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, origin="policy.toml")
    assert expected in str(caught.value)
    assert str(caught.value).startswith("policy.toml:")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "nope.toml")


def test_no_file_means_defaults():
    assert load_policy(None) == Policy()
