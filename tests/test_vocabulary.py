"""
Tests for L{dicomecho.wire.vocabulary}: each code of PS3.8 Tables 9-18,
9-21 and 9-26 and the DIMSE statuses we use has its renderings (echoscp's
C{-d} wording, plain wording, metric label), and every lookup answers any
code, known or not, the way its renderer always has.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomecho.wire.vocabulary import (
    ABORT_REASONS,
    ABORT_SOURCES,
    CONTEXT_RESULTS,
    LABELLED_REJECTIONS,
    NO_VALUE,
    OTHER_LABEL,
    REJECT_LABELS,
    REJECT_REASONS,
    REJECT_RESULTS,
    REJECT_SOURCES,
    STATUSES,
    Meaning,
    abortReasonEchoscp,
    abortReasonText,
    abortSourceEchoscp,
    abortSourceText,
    contextResultEchoscp,
    contextResultText,
    rejectLabel,
    rejectReasonEchoscp,
    rejectReasonText,
    rejectResultEchoscp,
    rejectResultText,
    rejectSourceEchoscp,
    rejectSourceText,
    statusText,
)

codes = st.integers(min_value=0, max_value=255)


def test_rejectionWordings() -> None:
    """
    An A-ASSOCIATE-RJ as echoscp's block and as a one-line message say it.
    """
    assert [rejectResultEchoscp(1), rejectSourceEchoscp(1), rejectReasonEchoscp(1, 7)] == [
        "Rejected (Permanent)",
        "DUL service-user",
        "Called AE title not recognised",
    ]
    assert [rejectResultText(2), rejectSourceText(3), rejectReasonText(3, 2)] == [
        "transient",
        "service-provider (presentation)",
        "local limit exceeded",
    ]
    assert rejectSourceEchoscp(2) == "DUL service-provider (ACSE related)"
    assert rejectSourceText(2) == "service-provider (ACSE)"
    assert rejectReasonText(1, 3) == "calling AE title not recognized"
    assert rejectReasonText(2, 2) == "protocol version not supported"


def test_rejectionReservedAndUnknown() -> None:
    """
    pynetdicom names reserved reasons C{Reserved} and anything else
    C{(no value available)}; the plain wording gives the number.
    """
    assert rejectReasonEchoscp(1, 4) == "Reserved"
    assert rejectReasonEchoscp(3, 0) == "Reserved"
    assert rejectReasonEchoscp(1, 11) == NO_VALUE == "(no value available)"
    assert rejectReasonEchoscp(9, 1) == NO_VALUE
    assert rejectReasonText(1, 4) == "reserved reason 4"
    assert rejectReasonText(9, 1) == "reserved reason 1"
    assert rejectResultText(3) == "result 3"
    assert rejectSourceText(0) == "source 0"
    assert rejectResultEchoscp(0) == rejectSourceEchoscp(4) == NO_VALUE


def test_abortWordings() -> None:
    """
    The A-ABORT reason counts only when the service-provider aborted
    (PS3.8 Table 9-26).
    """
    assert abortSourceEchoscp(0) == "DUL service-user"
    assert abortSourceEchoscp(1) == "Reserved"
    assert abortSourceEchoscp(2) == "DUL service-provider"
    assert abortReasonEchoscp(2, 1) == "Unrecognised PDU"
    assert abortReasonEchoscp(2, 3) == "Reserved"
    assert abortReasonEchoscp(0, 1) == NO_VALUE
    assert abortReasonEchoscp(2, None) == NO_VALUE
    assert abortSourceText(1) == "reserved source"
    assert abortSourceText(7) == "source 7"
    assert abortReasonText(0) == "reason not specified"
    assert abortReasonText(6) == "invalid PDU parameter value"
    assert abortReasonText(3) == "reason 3"


def test_contextResultsAndStatuses() -> None:
    assert contextResultEchoscp(0) == "Accepted"
    assert contextResultEchoscp(3) == "Rejected - Abstract Syntax Not Supported"
    assert contextResultEchoscp(9) == NO_VALUE
    assert contextResultText(4) == "transfer syntaxes not supported"
    assert contextResultText(2) == "provider rejection, no reason"
    # Acceptance has no plain wording: only refusals are told.
    assert contextResultText(0) == "result 0"
    assert statusText(0x0122) == "0x0122 (SOP class not supported)"
    assert statusText(0x0211) == "0x0211 (unrecognized operation)"
    assert statusText(0xC000) == "0xC000"


def test_labels() -> None:
    """
    The rejections the server sends are labelled; anything else is
    C{other}. Every label is in L{REJECT_LABELS}, C{other} last.
    """
    assert rejectLabel(1, 1, 3) == "calling-ae-title"
    assert rejectLabel(1, 1, 7) == "called-ae-title"
    assert rejectLabel(1, 1, 2) == "application-context"
    assert rejectLabel(1, 2, 1) == "user-identity"
    assert rejectLabel(1, 2, 2) == "protocol-version"
    assert rejectLabel(2, 3, 2) == "local-limit"
    assert rejectLabel(2, 1, 3) == OTHER_LABEL == "other"
    assert set(REJECT_LABELS) == {rejectLabel(*key) for key in LABELLED_REJECTIONS} | {"other"}
    assert REJECT_LABELS[-1] == "other" and len(set(REJECT_LABELS)) == len(REJECT_LABELS)


@pytest.mark.parametrize(
    "table",
    [REJECT_RESULTS, REJECT_SOURCES, REJECT_REASONS, ABORT_SOURCES, ABORT_REASONS, CONTEXT_RESULTS, STATUSES],
)
def test_everyMeaningSaysSomething(table: dict[object, Meaning]) -> None:
    for meaning in table.values():
        assert meaning.echoscp or meaning.text


def test_reservedHaveNoPlainWording() -> None:
    """
    A reserved value has pynetdicom's C{Reserved} only: the plain wording
    gives its number.
    """
    reserved = [key for key, meaning in REJECT_REASONS.items() if meaning.echoscp == "Reserved"]
    assert reserved
    assert all(REJECT_REASONS[key].text is None for key in reserved)


@given(codes, codes, codes)
def test_anyCodeHasWords(result: int, source: int, reason: int) -> None:
    """
    Whatever a peer sends, every lookup answers; an unknown code's plain
    wording names the number.
    """
    for text in (
        rejectResultEchoscp(result),
        rejectSourceEchoscp(source),
        rejectReasonEchoscp(source, reason),
        abortSourceEchoscp(source),
        abortReasonEchoscp(source, reason),
        contextResultEchoscp(result),
        rejectLabel(result, source, reason),
    ):
        assert isinstance(text, str) and text
    if result not in REJECT_RESULTS:
        assert rejectResultText(result) == f"result {result}"
    if (source, reason) not in REJECT_REASONS or REJECT_REASONS[source, reason].text is None:
        assert rejectReasonText(source, reason) == f"reserved reason {reason}"
    if reason not in ABORT_REASONS or ABORT_REASONS[reason].text is None:
        assert abortReasonText(reason) == f"reason {reason}"
    assert abortSourceText(source) in (f"source {source}", ABORT_SOURCES.get(source, Meaning()).text)


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_statusTextStartsWithTheCode(status: int) -> None:
    assert statusText(status).startswith(f"0x{status:04X}")
