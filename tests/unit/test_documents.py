"""The versioned document serialiser (shared/documents.py): versions, upcasters, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum

import pytest

from shared.documents import (
    VERSION_KEY,
    DocumentError,
    DocumentType,
    Stored,
    require_aware_fields,
)


@dataclass(frozen=True)
class Parcel:
    parcel_id: str
    weight_grams: int
    signed_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.signed_at is not None and self.signed_at.utcoffset() is None:
            raise ValueError("signed_at must be timezone-aware")


def _grams(data: dict) -> dict:
    """Version 1 stored kilograms."""
    upcast = dict(data)
    upcast["weight_grams"] = int(upcast.pop("weight_kg") * 1000)
    return upcast


def _renamed(data: dict) -> dict:
    """Version 2 called the id `id`."""
    upcast = dict(data)
    upcast["parcel_id"] = upcast.pop("id")
    return upcast


PARCEL = DocumentType("parcel", Parcel, version=3, upcasters={1: _grams, 2: _renamed})
SIGNED = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)


def test_a_dump_carries_the_current_version_and_loads_back():
    parcel = Parcel("p1", 1200, SIGNED)
    data = PARCEL.dump(parcel)
    assert data == {
        "parcel_id": "p1",
        "weight_grams": 1200,
        "signed_at": "2026-03-01T16:30:00+00:00",
        VERSION_KEY: 3,
    }
    assert PARCEL.load(data) == parcel


def test_older_versions_pass_every_upcaster_from_theirs_on():
    assert PARCEL.load({"id": "p1", "weight_kg": 1.5}) == Parcel("p1", 1500)  # no key: v1
    assert PARCEL.load({"id": "p1", "weight_grams": 7, VERSION_KEY: 2}) == Parcel("p1", 7)
    assert PARCEL.load({"parcel_id": "p1", "weight_grams": 7, VERSION_KEY: 3}) == Parcel("p1", 7)


def test_a_document_newer_than_the_code_is_refused_by_name():
    with pytest.raises(DocumentError, match="parcel document version 4 is newer"):
        PARCEL.load({"parcel_id": "p1", "weight_grams": 7, VERSION_KEY: 4})


@pytest.mark.parametrize("version", [0, -1, "2", True, None])
def test_a_bad_version_is_refused(version):
    with pytest.raises(DocumentError, match="bad document_version"):
        PARCEL.load({"parcel_id": "p1", "weight_grams": 7, VERSION_KEY: version})


def test_an_invalid_document_is_one_line_naming_type_and_field():
    with pytest.raises(DocumentError) as error:
        PARCEL.load({"parcel_id": "p1", "weight_grams": "heavy", VERSION_KEY: 3})
    assert "\n" not in str(error.value)
    assert str(error.value).startswith("parcel document: weight_grams: ")


def test_the_dataclass_own_checks_apply_on_load():
    with pytest.raises(DocumentError, match="timezone-aware"):
        PARCEL.load(
            {"parcel_id": "p1", "weight_grams": 7, "signed_at": "2026-03-01T16:30", VERSION_KEY: 3}
        )


def test_every_older_version_needs_its_upcaster():
    with pytest.raises(ValueError, match="one upcaster per version"):
        DocumentType("parcel", Parcel, version=3, upcasters={1: _grams})
    with pytest.raises(ValueError, match="one upcaster per version"):
        DocumentType("parcel", Parcel, version=1, upcasters={1: _grams})


@dataclass
class Watch:
    started_at: datetime
    ended_at: datetime | None = None
    timers: dict[str, datetime] | None = None


def test_naive_instants_are_named_also_inside_timers():
    require_aware_fields(Watch(SIGNED, None, {"wait": SIGNED}), "started_at", "ended_at", "timers")
    with pytest.raises(ValueError, match=r"^ended_at must be timezone-aware$"):
        require_aware_fields(Watch(SIGNED, SIGNED.replace(tzinfo=None)), "ended_at")
    naive = {"wait": SIGNED.replace(tzinfo=None)}
    with pytest.raises(ValueError, match=r"^timers wait must be timezone-aware$"):
        require_aware_fields(Watch(SIGNED, None, naive), "started_at", "timers")


class Mood(StrEnum):
    CALM = "calm"
    CROSS = "cross"


@dataclass
class Visit:
    note: str
    at: datetime
    moods: set[Mood]
    by_mood: dict[Mood, datetime]
    stops: tuple[tuple[str, int], ...]
    parcel: Parcel | None = None
    seen: frozenset[str] = frozenset()


VISIT = DocumentType("visit", Visit, version=2, upcasters={1: lambda data: data})


OFFSETS = [timedelta(0), timedelta(hours=8), timedelta(hours=-3, minutes=-30)]


@pytest.mark.parametrize("offset", [*OFFSETS, timedelta(hours=5, minutes=30, seconds=15)])
def test_the_json_text_holds_the_dump_exactly(offset):
    at = datetime(2026, 3, 1, 16, 30, 5, 120, tzinfo=timezone(offset))
    visit = Visit(
        'text "quoted", 中文, \u2028 and \\',
        at,
        {Mood.CROSS, Mood.CALM},
        {Mood.CROSS: at, Mood.CALM: SIGNED},
        (("a", 1), ("b", -2)),
        Parcel("p1", 7, at),
        frozenset({"z", "y"}),
    )
    text = VISIT.dump_json(visit)
    assert json.loads(text) == VISIT.dump(visit)
    assert '"at":"' + at.isoformat() + '"' in text  # offset seconds kept, as isoformat
    assert '"moods":["calm","cross"]' in text and '"seen":["y","z"]' in text
    if offset.seconds % 60 == 0:  # pydantic reads no offset seconds, whichever the writer
        assert VISIT.load_json(text) == visit
        assert VISIT.load_json(text.encode()) == visit


def test_the_json_text_of_an_empty_document_is_its_version():
    @dataclass
    class Empty:
        pass

    assert json.loads(DocumentType("empty", Empty).dump_json(Empty())) == {VERSION_KEY: 1}


@dataclass
class Crate(Stored):
    crate_id: str
    weight_grams: int


def _crate_in_kg(data: dict) -> dict:
    return {"crate_id": data["crate_id"], "weight_grams": int(data.pop("weight_kg") * 1000)}


CRATE = DocumentType("crate", Crate, version=2, upcasters={1: _crate_in_kg})


def test_a_stored_aggregate_reads_and_writes_through_its_document_type():
    crate = Crate("c1", 1500)
    assert (
        crate.to_dict()
        == CRATE.dump(crate)
        == {"crate_id": "c1", "weight_grams": 1500, VERSION_KEY: 2}
    )
    assert json.loads(crate.to_json()) == crate.to_dict()
    assert Crate.from_json(crate.to_json()) == Crate.from_dict(crate.to_dict()) == crate
    # An old document is brought forward by the type's upcaster, as `CRATE.load` would.
    assert Crate.from_dict({"crate_id": "c1", "weight_kg": 1.5}) == crate
    with pytest.raises(DocumentError, match="crate document version 3"):
        Crate.from_json('{"crate_id": "c1", "weight_grams": 1, "document_version": 3}')
