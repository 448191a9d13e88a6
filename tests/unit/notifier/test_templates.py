"""Every notification template, in zh-CN and en, with its documented parameters."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.notifier.rendering import TEMPLATE_DIR, Renderer, TemplateProblem

T = "2024-05-01T14:00:00+08:00"
DECISION = {
    "return_id": "R1",
    "order_id": "O1",
    "kind": "refund",
    "rule": "window_expired",
    "message": "您好，很抱歉，7天无理由退货期限已结束。如果商品存在质量问题，您仍可以申请售后。",
    "message_en": (
        "Hello, we are sorry: the 7-day period ended. You can still report a quality issue."
    ),
}

# name -> (required params, optional params): docs/decisions-notifier.md lists the same.
CATALOGUE: dict[str, tuple[dict[str, str | int], dict[str, str | int]]] = {
    "return.approved": (DECISION, {"return_shipping_payer": "buyer", "refund_estimate": 9000}),
    "return.rejected": (DECISION, {}),
    "return.pending": ({**DECISION, "waiting_for": "evidence"}, {}),
    "return.completed": (DECISION, {}),
    "refund.issued": (
        {
            "order_id": "O1",
            "case_type": "complaint",
            "case_id": "K1",
            "amount": 1200,
            "currency": "CNY",
        },
        {"refund_id": "rf-1", "issued_at": T},
    ),
    "complaint.acknowledged": (
        {"complaint_id": "K1", "answer_within_hours": 2, "answer_by": T},
        {"resolve_within_hours": 24, "resolve_by": T, "category": "quality_issue"},
    ),
    "complaint.escalated": (
        {"complaint_id": "K1"},
        {"reason": "first_response_overdue", "answer_by": T},
    ),
    "complaint.reopened": ({"complaint_id": "K1"}, {"resolve_within_hours": 24, "resolve_by": T}),
    "case.priority_callback": (
        {"case_type": "return", "case_id": "R1"},
        {"call_back_within_hours": 2, "call_back_by": T},
    ),
    "complaint.compensated": (
        {"complaint_id": "K1"},
        {
            "order_id": "O1",
            "category": "quality_issue",
            "currency": "CNY",
            "refund": 1,
            "late_shipment_refund": 700,
            "reshipment": 1,
            "coupon_value": 500,
            "coupon_expires_at": T,
            "coupon_pending_value": 300,
            "coupon_by_supervisor": 1,
            "late_shipment_refund_earlier": 500,
            "not_buyer": 1,
        },
    ),
    "complaint.compensation_approved": (
        {"complaint_id": "K1"},
        {"value": 500, "currency": "CNY", "expires_at": T},
    ),
    "complaint.compensation_denied": (
        {"complaint_id": "K1"},
        {"value": 500, "currency": "CNY", "window_days": 30},
    ),
    "complaint.apology_late_shipment": (
        {"order_id": "O1"},
        {"amount": 1500, "currency": "CNY", "ship_by": T, "order_state": "shipped"},
    ),
    "survey.invitation": (
        {"callback_id": "CB1"},
        {
            "answer_by": T,
            "survey_url": "https://shop.example/s/CB1",
            "deadline": T,
            "case_count": 2,
            "cases": "return:R1,complaint:K1",
        },
    ),
}
BOTH = ("zh-CN", "en")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(ZoneInfo("Asia/Shanghai"))


def test_every_template_file_is_in_the_catalogue_in_both_languages(renderer: Renderer) -> None:
    assert renderer.names() == sorted(CATALOGUE)
    for name in CATALOGUE:
        assert renderer.languages(name) == BOTH, name
    for path in TEMPLATE_DIR.iterdir():
        assert path.suffix == ".txt", path


@pytest.mark.parametrize("name", sorted(CATALOGUE))
@pytest.mark.parametrize("language", BOTH)
def test_renders_with_required_and_with_all_params(
    renderer: Renderer, name: str, language: str
) -> None:
    required, optional = CATALOGUE[name]
    for params in (required, {**required, **optional}):
        out = renderer.render(name, params, (language,))
        assert out.language == language
        assert out.subject and out.body and out.subject != out.body
        assert "{{" not in out.body and "{%" not in out.body and "None" not in out.body
        if language == "en":
            assert not any("\u4e00" <= ch <= "\u9fff" for ch in out.subject + out.body), name


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_a_missing_required_param_is_a_clear_error(renderer: Renderer, name: str) -> None:
    required, _ = CATALOGUE[name]
    for param in required:
        if name.startswith("return.") and param in ("kind", "rule"):
            continue  # passed for the record; the texts come from `message`
        if name == "return.pending" and param == "message_en":
            continue  # en only; zh-CN renders first and fails on other params
        params = {k: v for k, v in required.items() if k != param}
        with pytest.raises(TemplateProblem) as err:
            renderer.check(name, params)
        assert err.value.reason == "template_error"
        assert f"parameter {param!r} is missing" in err.value.detail, (name, param)


def test_formats_money_and_local_times(renderer: Renderer) -> None:
    zh = renderer.render("refund.issued", CATALOGUE["refund.issued"][0], ("zh-CN",))
    en = renderer.render("refund.issued", CATALOGUE["refund.issued"][0], ("en",))
    assert "¥12.00" in zh.body and "CNY 12.00" in en.body
    ack = renderer.render("complaint.acknowledged", CATALOGUE["complaint.acknowledged"][0], BOTH)
    assert "2024年5月1日 14:00（北京时间）" in ack.body
    en_ack = renderer.render(
        "complaint.acknowledged", CATALOGUE["complaint.acknowledged"][0], ("en",)
    )
    assert "14:00 on 1 May 2024 (Beijing time)" in en_ack.body
    # A UTC instant is shown in the shop's zone.
    utc = {**CATALOGUE["complaint.acknowledged"][0], "answer_by": "2024-05-01T06:00:00Z"}
    assert "14:00" in renderer.render("complaint.acknowledged", utc, ("zh-CN",)).body


@pytest.mark.parametrize(
    ("amount", "currency", "zh", "en"),
    [
        (12345, "KWD", "12.345 KWD", "KWD 12.345"),
        (12345, "CLP", "12345 CLP", "CLP 12345"),
        (12345, "JPY", "12345 JPY", "JPY 12345"),
        (12345, "CNY", "¥123.45", "CNY 123.45"),
    ],
)
def test_money_has_the_currency_own_minor_unit_digits(
    renderer: Renderer, amount: int, currency: str, zh: str, en: str
) -> None:
    params = {**CATALOGUE["refund.issued"][0], "amount": amount, "currency": currency}
    assert zh in renderer.render("refund.issued", params, ("zh-CN",)).body
    assert en in renderer.render("refund.issued", params, ("en",)).body


def test_an_unknown_currency_is_a_template_error(renderer: Renderer) -> None:
    params = {**CATALOGUE["refund.issued"][0], "currency": "ZZZ"}
    with pytest.raises(TemplateProblem) as err:
        renderer.render("refund.issued", params, ("en",))
    assert err.value.reason == "template_error" and "ISO 4217" in err.value.detail


def test_wrong_param_types_are_template_errors(renderer: Renderer) -> None:
    bad_amount = {**CATALOGUE["refund.issued"][0], "amount": "12.00"}
    with pytest.raises(TemplateProblem, match="integer number of minor units"):
        renderer.check("refund.issued", bad_amount)
    bad_time = {**CATALOGUE["complaint.acknowledged"][0], "answer_by": "tomorrow"}
    with pytest.raises(TemplateProblem, match="RFC 3339") as err:
        renderer.check("complaint.acknowledged", bad_time)
    assert "tomorrow" not in err.value.detail  # values are never echoed


@pytest.mark.parametrize("name", ["nope", "complaint.nope", "../templates/x", "A.B", ""])
def test_unknown_template_names(renderer: Renderer, name: str) -> None:
    with pytest.raises(TemplateProblem) as err:
        renderer.check(name, {})
    assert err.value.reason == "unknown_template"


def test_language_falls_back_to_the_template_that_exists(tmp_path: Path) -> None:
    (tmp_path / "only.zh.en.txt").write_text("Title\nBody {{ x }}", encoding="utf-8")
    renderer = Renderer(directory=tmp_path)
    out = renderer.render("only.zh", {"x": 1}, ("zh-CN", "en"))
    assert out.language == "en" and out.body == "Body 1"


def test_the_sandbox_keeps_templates_away_from_python_internals(tmp_path: Path) -> None:
    (tmp_path / "evil.en.txt").write_text(
        "Title\n{{ x.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8"
    )
    with pytest.raises(TemplateProblem) as err:
        Renderer(directory=tmp_path).check("evil", {"x": "s"})
    assert err.value.reason == "template_error"


def test_refusals_say_why_and_what_the_buyer_can_do(renderer: Renderer) -> None:
    rejected = renderer.render("return.rejected", DECISION, ("zh-CN",))
    assert DECISION["message"] in rejected.body  # the decision's why and alternative
    assert "复核" in rejected.body and "平台介入" in rejected.body
    rejected_en = renderer.render("return.rejected", DECISION, ("en",))
    assert DECISION["message_en"] in rejected_en.body and "review" in rejected_en.body
    denied = renderer.render("complaint.compensation_denied", {"complaint_id": "K1"}, ("zh-CN",))
    assert "上限" in denied.body and "复核" in denied.body
    denied_en = renderer.render("complaint.compensation_denied", {"complaint_id": "K1"}, ("en",))
    assert "cap" in denied_en.body and "review" in denied_en.body
    late = renderer.render(
        "complaint.apology_late_shipment", {"order_id": "O1", "amount": 1500}, ("zh-CN",)
    )
    assert "抱歉" in late.body and "取消订单" in late.body
    # An upheld complaint about an order the complainant did not place: why nothing automatic
    # comes, who decides instead, and what the buyer of the order can do.
    withheld = {"complaint_id": "K1", "order_id": "O1", "not_buyer": 1}
    zh = renderer.render("complaint.compensated", withheld, ("zh-CN",)).body
    assert "并非由您的账户下单" in zh and "客服主管" in zh and "下单人" in zh
    en = renderer.render("complaint.compensated", withheld, ("en",)).body
    assert "O1 was not placed from your account" in en and "supervisor" in en
    assert "someone else bought the order" in en and "refunded" not in en


def test_templates_never_reference_contact_data() -> None:
    for path in TEMPLATE_DIR.glob("*.txt"):
        text = path.read_text(encoding="utf-8")
        for field in ("phone", "email", "customer_name", "name }}"):
            assert field not in text, (path.name, field)


def test_the_compensation_notice_leaves_the_refund_amount_to_the_refund_notice(
    renderer: Renderer,
) -> None:
    params = {"complaint_id": "K1", "currency": "CNY", "refund": 1, "coupon_value": 500}
    en = renderer.render("complaint.compensated", params, ("en",)).body
    zh = renderer.render("complaint.compensated", params, ("zh-CN",)).body
    assert "a separate message confirms the amount" in en and "以退款通知为准" in zh
    assert "CNY 5.00" in en  # the coupon's value is this notice's to tell
    issued = {"order_id": "O1", "case_type": "return", "case_id": "R1", "currency": "CNY"}
    assert (
        "for your return R1, we have refunded CNY 45.00"
        in renderer.render("refund.issued", {**issued, "amount": 4500}, ("en",)).body
    )


@pytest.mark.parametrize("lang", BOTH)
def test_the_late_shipment_apology_fits_the_order(renderer: Renderer, lang: str) -> None:
    base = {"order_id": "O1", "currency": "CNY"}
    waiting = renderer.render(
        "complaint.apology_late_shipment", base | {"amount": 1500}, (lang,)
    ).body
    shipped = renderer.render(
        "complaint.apology_late_shipment", base | {"order_state": "shipped"}, (lang,)
    ).body
    cancelled = renderer.render(
        "complaint.apology_late_shipment", base | {"order_state": "cancelled"}, (lang,)
    ).body
    cancel_offer = "cancel it" if lang == "en" else "取消订单"
    refunded = "refunded" if lang == "en" else "退款"
    assert cancel_offer in waiting and "15.00" in waiting
    for body in (shipped, cancelled):
        assert cancel_offer not in body and refunded not in body  # no refund owed: none stated
