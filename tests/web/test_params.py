"""The HTTP parameter layer: every bad value is a BadParam naming its field (issue 12)."""

from __future__ import annotations

from datetime import date

import pytest
from multidict import MultiDict

from cases.review import CaseFilter, ReviewState
from web import params
from web.audit import byte_range, case_filter
from web.params import BadParam


def bad(query: dict[str, object]) -> BadParam:
    with pytest.raises(BadParam) as err:
        case_filter(query)
    return err.value


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ({"date_from": "yesterday"}, "date_from", "bad_date"),
        ({"date_from": "2026-13-01"}, "date_from", "bad_date"),
        ({"date_from": "20260501"}, "date_from", "bad_date"),  # fromisoformat would take it
        ({"date_from": "2026-02-02", "date_to": "2026-02-01"}, "date_to", "out_of_range"),
        ({"date_to": "9999-12-31"}, "date_to", "out_of_range"),
        ({"service": "loan"}, "service", "bad_choice"),
        ({"outcome": "maybe"}, "outcome", "bad_choice"),
        ({"flag": "odd"}, "flag", "bad_choice"),
        ({"state": "done"}, "state", "bad_choice"),
        ({"advisor": "-3"}, "advisor", "bad_number"),
        ({"advisor": "²"}, "advisor", "bad_number"),
        ({"advisor": "٣"}, "advisor", "bad_number"),  # int() would read an Arabic-Indic 3
        ({"advisor": "99999999999999999999"}, "advisor", "out_of_range"),
        ({"advisor": str(2**31)}, "advisor", "out_of_range"),
        ({"page": "0"}, "page", "out_of_range"),
        ({"page": "²"}, "page", "bad_number"),
        ({"page": "9" * 5000}, "page", "out_of_range"),
        ({"page": "1e3"}, "page", "bad_number"),
    ],
)
def test_a_bad_filter_names_its_field(query: dict[str, object], field: str, code: str) -> None:
    err = bad(query)
    assert (err.field, err.code) == (field, code)
    assert err.as_json() == {"error": code, "message": f"{field}: {err.message}", "field": field}


def test_a_good_filter_is_read_whole() -> None:
    query = MultiDict(
        date_from="2026-05-01",
        date_to=" 2026-05-31 ",
        service="card_loss",
        outcome="none",
        advisor="0007",
        flag="any",
        state="unreviewed",
        page="3",
    )
    assert case_filter(query) == CaseFilter(
        date_from=date(2026, 5, 1),
        date_to=date(2026, 5, 31),
        service="card_loss",
        outcome="none",
        advisor_id=7,
        flag="any",
        state=ReviewState.UNREVIEWED,
        page=3,
    )
    assert case_filter({"page": "", "advisor": "  "}) == CaseFilter()


def test_text_is_bounded_and_printable() -> None:
    assert params.text({"q": "  名字 "}, "q") == "名字"
    with pytest.raises(BadParam) as long:
        params.text({"q": "x" * 201}, "q")
    assert long.value.code == "too_long"
    with pytest.raises(BadParam) as control:
        params.text({"q": "a\x00b"}, "q")
    assert control.value.code == "bad_text"
    with pytest.raises(BadParam) as upload:
        params.text({"q": object()}, "q")
    assert upload.value.code == "bad_text"


@pytest.mark.parametrize(
    "header", ["bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 5000, "bytes=٣-"]
)
def test_a_range_header_no_server_could_serve_is_ignored_not_a_500(header: str) -> None:
    assert byte_range(header, 1000) is None  # the whole file (RFC 9110 allows it)


def test_a_range_header_is_still_read() -> None:
    assert byte_range("bytes=1-", 1000) == (1, 1000)
    assert byte_range("bytes=-10", 1000) == (990, 1000)
