"""Property-based fuzzing of the HTTP parameter layer (issue 12): whatever a query string holds,
the audit search's filter is read whole or a :class:`BadParam` names one of its fields with a
known code; a ``Range`` header is served, ignored or refused as unsatisfiable — never another
exception.

Fixed seed (``derandomize``), no example database, 10,000 inputs per test: queries drawn over the
filter's schema (its fields with near-valid and arbitrary values) and raw query strings.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from yarl import URL

from cases.review import CaseFilter
from web.audit import Unsatisfiable, byte_range, case_filter
from web.params import BadParam

FUZZ = settings(
    max_examples=10_000,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELDS = ("date_from", "date_to", "service", "outcome", "advisor", "flag", "state", "page")
CODES = {"bad_text", "too_long", "bad_number", "out_of_range", "bad_date", "bad_choice"}
ANY_CHAR = st.characters(codec=None, categories=None)
# Values near what the readers accept: digits of every script, huge numbers, dates at the edges.
near = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(("²", "٣", "１", "0", "00", "1e3", " 7 ", "9" * 5000, "-0", "+1", "0x1f")),
    st.dates().map(str),
    st.sampled_from(("9999-12-31", "0001-01-01", "2026-02-30", "20260501", "2026-5-1")),
    st.sampled_from(("card_loss", "pin_change", "none", "any", "unreviewed", "confirmed")),
    st.text(ANY_CHAR, max_size=30),
)


def assert_read_or_named(query: MultiDict[str]) -> None:
    try:
        found = case_filter(query)
    except BadParam as err:
        assert err.field in FIELDS, err.field
        assert err.code in CODES, err.code
        json.dumps(err.as_json())  # the 400 body can be sent
        return
    assert isinstance(found, CaseFilter)
    assert found.page >= 1
    json.dumps(found.to_query(page=found.page))  # the next page's link can be built


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(FIELDS), near), max_size=6))
def test_any_query_over_the_filter_is_read_or_names_its_field(pairs: list[tuple[str, str]]) -> None:
    assert_read_or_named(MultiDict(pairs))


@FUZZ
@given(st.one_of(st.text(ANY_CHAR, max_size=200), st.binary(max_size=200).map(quote)))
def test_any_raw_query_string_is_read_or_names_its_field(raw: str) -> None:
    # What aiohttp hands the handler: yarl's reading of the raw query string.
    try:
        query = URL("/audit?" + raw.replace("#", "%23")).query
    except ValueError:  # yarl refuses the URL: aiohttp answers 400 before any handler runs
        return
    assert_read_or_named(MultiDict(query))


ranges = st.one_of(
    st.none(),
    st.text(ANY_CHAR, max_size=40),
    st.builds(
        lambda a, b: f"bytes={a}-{b}",
        st.one_of(st.just(""), st.integers(0, 10**20).map(str)),
        st.one_of(st.just(""), st.integers(0, 10**20).map(str)),
    ),
)


@FUZZ
@given(ranges, st.integers(0, 10**12))
def test_any_range_header_is_served_ignored_or_unsatisfiable(header: str | None, size: int) -> None:
    try:
        span = byte_range(header, size)
    except Unsatisfiable:
        return
    if span is not None:
        start, end = span
        assert 0 <= start < end <= size
