# -*- test-case-name: tests.test_vocabulary -*-
"""
What the numbers of the DICOM Upper Layer and DIMSE mean, in words: one
table for every renderer (the C{-d} blocks, C{dicomecho-ping}'s messages,
the metric labels).

Each code maps to a L{Meaning} carrying every rendering it has:

  - C{echoscp}: pynetdicom's wording, as echoscp's C{-d} blocks print it
    (C{"Rejected (Permanent)"}, C{"DUL service-user"}, ...);
  - C{text}: plain wording for one-line messages (C{"permanent"},
    C{"calling AE title not recognized"}, ...);
  - C{label}: the metric label, for the rejections the server sends
    (C{"calling-ae-title"}, ...).

A rendering a code does not have is C{None}; the lookup functions then
fall back as each renderer always has.

The tables (code, or C{(source, reason)}, to L{Meaning}):

  - L{REJECT_RESULTS}, L{REJECT_SOURCES}, L{REJECT_REASONS}: A-ASSOCIATE-RJ
    result, source and reason/diag. (PS3.8 Table 9-21);
  - L{ABORT_SOURCES}, L{ABORT_REASONS}: A-ABORT source and reason/diag.
    (PS3.8 Table 9-26);
  - L{CONTEXT_RESULTS}: presentation context result/reason in an
    A-ASSOCIATE-AC (PS3.8 Table 9-18);
  - L{STATUSES}: the DIMSE status codes we send or meet (PS3.7 Annex C).

Lookups, C{echoscp} wording (unknown: L{NO_VALUE}, C{"(no value
available)"}, as pynetdicom prints it):

  - C{rejectResultEchoscp(result)}, C{rejectSourceEchoscp(source)},
    C{rejectReasonEchoscp(source, reason)};
  - C{abortSourceEchoscp(source)}, C{abortReasonEchoscp(source, reason)}
    (the reason only when the source is the service-provider);
  - C{contextResultEchoscp(result)}.

Lookups, plain wording (unknown: the number, as C{dicomecho-ping} says it):

  - C{rejectResultText(result)} (else C{"result N"}),
    C{rejectSourceText(source)} (C{"source N"}),
    C{rejectReasonText(source, reason)} (C{"reserved reason N"});
  - C{abortSourceText(source)} (C{"source N"}), C{abortReasonText(reason)}
    (C{"reason N"});
  - C{contextResultText(result)} (C{"result N"});
  - C{statusText(status)}: C{"0x0122 (SOP class not supported)"}, or just
    C{"0x1234"}.

Metric labels:

  - C{rejectLabel(result, source, reason)}: the label of a rejection in
    L{LABELLED_REJECTIONS}, else L{OTHER_LABEL} (C{"other"});
  - L{REJECT_LABELS}: every value C{rejectLabel} can return.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomecho.wire.errors import AbortReason, AbortSource
from dicomecho.wire.items import PresentationResult
from dicomecho.wire.pdu import RejectReason, RejectResult, RejectSource

__all__ = [
    "Meaning",
    "NO_VALUE",
    "OTHER_LABEL",
    "REJECT_RESULTS",
    "REJECT_SOURCES",
    "REJECT_REASONS",
    "LABELLED_REJECTIONS",
    "REJECT_LABELS",
    "ABORT_SOURCES",
    "ABORT_REASONS",
    "CONTEXT_RESULTS",
    "STATUSES",
    "rejectResultEchoscp",
    "rejectSourceEchoscp",
    "rejectReasonEchoscp",
    "abortSourceEchoscp",
    "abortReasonEchoscp",
    "contextResultEchoscp",
    "rejectResultText",
    "rejectSourceText",
    "rejectReasonText",
    "abortSourceText",
    "abortReasonText",
    "contextResultText",
    "statusText",
    "rejectLabel",
]


@dataclass(frozen=True, slots=True)
class Meaning:
    """
    One code's renderings; C{None} where it has none.

    @ivar echoscp: pynetdicom's wording, for echoscp's C{-d} blocks.
    @ivar text: plain wording, for one-line messages.
    @ivar label: the metric label.
    """

    echoscp: str | None = None
    text: str | None = None
    label: str | None = None


#: What pynetdicom prints for a code it has no wording for.
NO_VALUE = "(no value available)"
#: The metric label of anything not labelled.
OTHER_LABEL = "other"

_USER = RejectSource.SERVICE_USER
_ACSE = RejectSource.SERVICE_PROVIDER_ACSE
_PRESENTATION = RejectSource.SERVICE_PROVIDER_PRESENTATION
_RESERVED = Meaning(echoscp="Reserved")

#: A-ASSOCIATE-RJ result (PS3.8 Table 9-21).
REJECT_RESULTS: dict[int, Meaning] = {
    RejectResult.PERMANENT: Meaning("Rejected (Permanent)", "permanent"),
    RejectResult.TRANSIENT: Meaning("Rejected (Transient)", "transient"),
}

#: A-ASSOCIATE-RJ source (PS3.8 Table 9-21).
REJECT_SOURCES: dict[int, Meaning] = {
    _USER: Meaning("DUL service-user", "service-user"),
    _ACSE: Meaning("DUL service-provider (ACSE related)", "service-provider (ACSE)"),
    _PRESENTATION: Meaning(
        "DUL service-provider (presentation related)", "service-provider (presentation)"
    ),
}

#: A-ASSOCIATE-RJ reason/diag., by C{(source, reason)}: its meaning depends
#: on the source (PS3.8 Table 9-21). Reserved values have only pynetdicom's
#: C{"Reserved"} (which, as pynetdicom does, includes source 3's 0).
REJECT_REASONS: dict[tuple[int, int], Meaning] = {
    (_USER, RejectReason.NO_REASON_GIVEN): Meaning("No reason given", "no reason given"),
    (_USER, RejectReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED): Meaning(
        "Application context name not supported",
        "application context name not supported",
        "application-context",
    ),
    (_USER, RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED): Meaning(
        "Calling AE title not recognised", "calling AE title not recognized", "calling-ae-title"
    ),
    (_USER, RejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED): Meaning(
        "Called AE title not recognised", "called AE title not recognized", "called-ae-title"
    ),
    **{(_USER, n): _RESERVED for n in (4, 5, 6, 8, 9, 10)},
    # Sent when a user identity is refused (PS3.7 D.3.3.7).
    (_ACSE, RejectReason.ACSE_NO_REASON_GIVEN): Meaning(
        "No reason given", "no reason given", "user-identity"
    ),
    (_ACSE, RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED): Meaning(
        "Protocol version not supported", "protocol version not supported", "protocol-version"
    ),
    (_PRESENTATION, RejectReason.TEMPORARY_CONGESTION): Meaning(
        "Temporary congestion", "temporary congestion"
    ),
    (_PRESENTATION, RejectReason.LOCAL_LIMIT_EXCEEDED): Meaning(
        "Local limit exceeded", "local limit exceeded", "local-limit"
    ),
    **{(_PRESENTATION, n): _RESERVED for n in (0, 3, 4, 5, 6, 7)},
}

#: The rejections (result, source, reason) the server sends, whose reason's
#: C{label} names them in metrics; any other is L{OTHER_LABEL}.
LABELLED_REJECTIONS: frozenset[tuple[int, int, int]] = frozenset(
    {
        (RejectResult.PERMANENT, _USER, RejectReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED),
        (RejectResult.PERMANENT, _USER, RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED),
        (RejectResult.PERMANENT, _USER, RejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED),
        (RejectResult.PERMANENT, _ACSE, RejectReason.ACSE_NO_REASON_GIVEN),
        (RejectResult.PERMANENT, _ACSE, RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED),
        (RejectResult.TRANSIENT, _PRESENTATION, RejectReason.LOCAL_LIMIT_EXCEEDED),
    }
)

#: The label of each of L{LABELLED_REJECTIONS}.
_REJECT_LABEL_OF: dict[tuple[int, int, int], str] = {
    key: REJECT_REASONS[key[1], key[2]].label  # type: ignore[misc]
    for key in LABELLED_REJECTIONS
}

#: Every rejection label, L{OTHER_LABEL} last.
REJECT_LABELS: tuple[str, ...] = (*sorted(_REJECT_LABEL_OF.values()), OTHER_LABEL)

#: A-ABORT source (PS3.8 Table 9-26).
ABORT_SOURCES: dict[int, Meaning] = {
    AbortSource.SERVICE_USER: Meaning("DUL service-user", "service-user"),
    AbortSource.RESERVED: Meaning("Reserved", "reserved source"),
    AbortSource.SERVICE_PROVIDER: Meaning("DUL service-provider", "service-provider"),
}

#: A-ABORT reason/diag. of a service-provider abort (PS3.8 Table 9-26).
ABORT_REASONS: dict[int, Meaning] = {
    AbortReason.REASON_NOT_SPECIFIED: Meaning("No reason given", "reason not specified"),
    AbortReason.UNRECOGNIZED_PDU: Meaning("Unrecognised PDU", "unrecognized PDU"),
    AbortReason.UNEXPECTED_PDU: Meaning("Unexpected PDU", "unexpected PDU"),
    3: _RESERVED,
    AbortReason.UNRECOGNIZED_PDU_PARAMETER: Meaning(
        "Unrecognised PDU parameter", "unrecognized PDU parameter"
    ),
    AbortReason.UNEXPECTED_PDU_PARAMETER: Meaning(
        "Unexpected PDU parameter", "unexpected PDU parameter"
    ),
    AbortReason.INVALID_PDU_PARAMETER_VALUE: Meaning(
        "Invalid PDU parameter value", "invalid PDU parameter value"
    ),
}

#: Presentation context result/reason in an A-ASSOCIATE-AC (PS3.8
#: Table 9-18). Acceptance has no plain wording: only refusals are told.
CONTEXT_RESULTS: dict[int, Meaning] = {
    PresentationResult.ACCEPTANCE: Meaning("Accepted"),
    PresentationResult.USER_REJECTION: Meaning("User Rejection", "user rejection"),
    PresentationResult.NO_REASON: Meaning(
        "Provider Rejection", "provider rejection, no reason"
    ),
    PresentationResult.ABSTRACT_SYNTAX_NOT_SUPPORTED: Meaning(
        "Rejected - Abstract Syntax Not Supported", "abstract syntax not supported"
    ),
    PresentationResult.TRANSFER_SYNTAXES_NOT_SUPPORTED: Meaning(
        "Rejected - Transfer Syntax Not Supported", "transfer syntaxes not supported"
    ),
}

#: DIMSE failure statuses (PS3.7 Annex C): 0x0122 and 0x0211 are the ones
#: we send; the others a C-ECHO-RSP may carry (PS3.7 Table 9.3-13).
STATUSES: dict[int, Meaning] = {
    0x0110: Meaning(text="processing failure"),
    0x0122: Meaning(text="SOP class not supported"),
    0x0210: Meaning(text="duplicate invocation"),
    0x0211: Meaning(text="unrecognized operation"),
    0x0212: Meaning(text="mistyped argument"),
    0x0213: Meaning(text="resource limitation"),
}


# --- echoscp's wording ----------------------------------------------------------


def _echoscp(meaning: Meaning | None) -> str:
    if meaning is None or meaning.echoscp is None:
        return NO_VALUE
    return meaning.echoscp


def rejectResultEchoscp(result: int) -> str:
    return _echoscp(REJECT_RESULTS.get(result))


def rejectSourceEchoscp(source: int) -> str:
    return _echoscp(REJECT_SOURCES.get(source))


def rejectReasonEchoscp(source: int, reason: int) -> str:
    return _echoscp(REJECT_REASONS.get((source, reason)))


def abortSourceEchoscp(source: int) -> str:
    return _echoscp(ABORT_SOURCES.get(source))


def abortReasonEchoscp(source: int, reason: int | None) -> str:
    """
    The reason only counts in a service-provider abort (PS3.8 Table 9-26):
    any other source, or no reason, is L{NO_VALUE}.
    """
    if source != AbortSource.SERVICE_PROVIDER or reason is None:
        return NO_VALUE
    return _echoscp(ABORT_REASONS.get(reason))


def contextResultEchoscp(result: int) -> str:
    return _echoscp(CONTEXT_RESULTS.get(result))


# --- plain wording --------------------------------------------------------------


def _text(meaning: Meaning | None, fallback: str) -> str:
    if meaning is None or meaning.text is None:
        return fallback
    return meaning.text


def rejectResultText(result: int) -> str:
    return _text(REJECT_RESULTS.get(result), f"result {result}")


def rejectSourceText(source: int) -> str:
    return _text(REJECT_SOURCES.get(source), f"source {source}")


def rejectReasonText(source: int, reason: int) -> str:
    return _text(REJECT_REASONS.get((source, reason)), f"reserved reason {reason}")


def abortSourceText(source: int) -> str:
    return _text(ABORT_SOURCES.get(source), f"source {source}")


def abortReasonText(reason: int) -> str:
    return _text(ABORT_REASONS.get(reason), f"reason {reason}")


def contextResultText(result: int) -> str:
    return _text(CONTEXT_RESULTS.get(result), f"result {result}")


def statusText(status: int) -> str:
    """
    C{status} in hex, with its meaning in brackets when it has one.
    """
    meaning = STATUSES.get(status)
    name = meaning.text if meaning is not None else None
    return f"0x{status:04X}" + (f" ({name})" if name else "")


# --- metric labels --------------------------------------------------------------


def rejectLabel(result: int, source: int, reason: int) -> str:
    """
    The metric label of an A-ASSOCIATE-RJ, L{OTHER_LABEL} for one not in
    L{LABELLED_REJECTIONS}.
    """
    return _REJECT_LABEL_OF.get((result, source, reason), OTHER_LABEL)
