"""The compensation table (SPEC 5): one row per category, nothing left to a default."""

from services.complaints.domain.compensation import COMPENSATION, Refund, Reshipment
from services.complaints.domain.rules import Category, Remedy


def test_every_category_has_exactly_one_row():
    assert set(COMPENSATION) == set(Category)


def test_remedy_is_read_only_where_the_buyer_chooses_it():
    for category, rule in COMPENSATION.items():
        chooses = category in (Category.NOT_RECEIVED, Category.FAKE_SHIPMENT)
        assert (rule.refund == Refund.BY_REMEDY) == chooses, category
        assert (rule.reshipment == Reshipment.BY_REMEDY) == chooses, category
        assert rule.reships(Remedy.RESHIP) != rule.reships(Remedy.REFUND) or not chooses


def test_the_late_shipment_penalty_is_the_compensation_of_late_and_fake_shipments_only():
    penalised = {category for category, rule in COMPENSATION.items() if rule.late_shipment_refund}
    assert penalised == {Category.LATE_SHIPMENT, Category.FAKE_SHIPMENT}
