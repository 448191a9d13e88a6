"""What the services' document tests share: the stored documents of tests/fixtures/documents,
the ids, amounts and instants they draw, and the round-trip tests every stored document must
pass, made over a suite's own strategies."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

FIXTURES = Path(__file__).parents[1] / "fixtures" / "documents"


def fixture_documents(name: str) -> Any:
    """tests/fixtures/documents/`name`.json: documents as earlier code stored them."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


ids = st.text("abcdefghij0123456789-", min_size=1, max_size=8)
amounts = st.integers(min_value=0, max_value=10**9)


def instants_in(*zones: tzinfo) -> st.SearchStrategy[datetime]:
    """Aware instants from 2020 to 2040, each in one of `zones` (UTC and UTC+8 by default)."""
    return st.builds(
        lambda moment, zone: moment.replace(tzinfo=UTC).astimezone(zone),
        st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1)),
        st.sampled_from(zones or (UTC, timezone(timedelta(hours=8)))),
    )


def round_trip_tests(
    documents: Mapping[str, st.SearchStrategy[Any]],
) -> tuple[Callable[..., None], Callable[..., None]]:
    """A suite's two round-trip tests, one case per named strategy of `documents`: a document
    comes back equal from its dict through JSON, and its JSON text is that dict and loads back."""
    cases = pytest.mark.parametrize("document", list(documents.values()), ids=list(documents))

    @cases
    @given(data=st.data())
    def test_a_document_round_trips(document: st.SearchStrategy[Any], data: st.DataObject) -> None:
        value = data.draw(document)
        assert type(value).from_dict(json.loads(json.dumps(value.to_dict()))) == value

    @cases
    @given(data=st.data())
    def test_the_json_text_is_the_document_and_loads_back(
        document: st.SearchStrategy[Any], data: st.DataObject
    ) -> None:
        value = data.draw(document)
        text = value.to_json()
        assert json.loads(text) == value.to_dict()
        assert type(value).from_json(text) == value

    return test_a_document_round_trips, test_the_json_text_is_the_document_and_loads_back
