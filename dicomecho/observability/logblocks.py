# -*- test-case-name: tests.test_logs -*-
"""
The text of echoscp's C{-d} blocks (the format of pynetdicom's
C{_handlers.py}) for A-ASSOCIATE-RQ/AC/RJ, A-ABORT and DIMSE
messages, and the escaping that keeps peer-chosen strings from forging log
lines. Pure: strings in, lines out; L{dicomecho.observability.logs} adds levels and
prefixes.
"""

from __future__ import annotations

import re

from pydicom.uid import UID

from dicomecho.association.commandset import CommandField, tag
from dicomecho.association.dimse import DIMSEMessage
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.userinfo import UserInformation
from dicomecho.wire.pdu import AssociateAC, AssociateRQ
from dicomecho.wire.vocabulary import (
    NO_VALUE,
    abortReasonEchoscp,
    abortSourceEchoscp,
    contextResultEchoscp,
    rejectReasonEchoscp,
    rejectResultEchoscp,
    rejectSourceEchoscp,
)

__all__ = [
    "MAX_VALUE_LENGTH",
    "escape",
    "banner",
    "valueText",
    "associateRQLines",
    "associateACLines",
    "associateRJLines",
    "abortLines",
    "dimseLines",
]

# --- text helpers -------------------------------------------------------------


_WIDTH = 76


def banner(title: str) -> str:
    """
    echoscp's banner: C{title} centred in 76 characters of C{=}.
    """
    return f"{' ' + title + ' ':=^{_WIDTH}}"


_UID_SYNTAX = re.compile(r"[0-9.]{1,64}")

#: Peer-supplied values longer than this are cut in log lines.
MAX_VALUE_LENGTH = 128

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str, backslash: bool = True) -> str:
    """
    Make C{text} safe to put on one log line: characters that are not
    printable (controls, line breaks, C1 controls, format characters) become
    C{repr}-style escapes such as C{\\x01}.

    @param backslash: treat C{text} as a raw peer value: also double
        backslashes, so an escape in the output cannot have been sent
        literally, and cut it after L{MAX_VALUE_LENGTH} characters. Pass
        C{False} for our own sentences, which already quote peer values
        with C{repr}.
    """
    if backslash and len(text) > MAX_VALUE_LENGTH:
        # A peer's value (a UID can be 64 KiB): keep the start, say the rest.
        extra = len(text) - MAX_VALUE_LENGTH
        return escape(text[:MAX_VALUE_LENGTH]) + f"... ({extra} more characters)"
    if text.isprintable() and (not backslash or "\\" not in text):
        return text
    out = []
    for ch in text:
        if ch == "\\" and backslash:
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        else:
            code = ord(ch)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    return "".join(out)


def valueText(value: object) -> str:
    """
    A peer-supplied value as text: C{None} as C{"None"}, strings escaped.
    """
    if value is None:
        return "None"
    if isinstance(value, str):
        return escape(value)
    return escape(str(value), backslash=False)


def _uidName(uid: str | None) -> str:
    """
    pydicom's name for C{uid} (the UID itself if pydicom does not know it),
    escaped; C{"None"} if absent.
    """
    if uid is None:
        return "None"
    if not _UID_SYNTAX.fullmatch(uid):
        # Not a UID (PS3.5 §9.1: digits and dots, at most 64 characters), so
        # pydicom cannot name it; asking would make it warn (and remember
        # the warning) once per distinct value a peer sends.
        return escape(uid)
    try:
        name = str(UID(uid).name)
    except Exception:
        name = uid
    return escape(name)


def _peerText(raw: bytes) -> str:
    """
    Bytes a peer sent as a name (a username): UTF-8 as pynetdicom reads
    it, or ISO 8859-1 if that fails; escaped.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return escape(text)


def _hexDump(data: bytes, prefix: str = "    ", maxSize: int = 512) -> list[str]:
    """
    pynetdicom's C{pretty_bytes}: 16 two-digit bytes a line, separated by
    two spaces, at most C{maxSize} bytes after an "Only dumping" line.
    """
    lines = [
        prefix + "  ".join(f"{b:02x}" for b in data[i : i + 16])
        for i in range(0, min(len(data), maxSize), 16)
    ]
    if len(data) > maxSize:
        lines.insert(0, f"{prefix}Only dumping {maxSize} bytes.")
    return lines





# --- the PDU blocks (pynetdicom's _handlers.py) --------------------------------

_IDENTITY_TYPES = {
    1: "Username",
    2: "Username/Password",
    3: "Kerberos",
    4: "SAML",
    5: "JSON Web Token",
}


def _role(info: UserInformation | None, abstractSyntax: str | None) -> str:
    """
    The SCP/SCU role line's value: C{Default} without a role selection
    sub-item for the abstract syntax, else the roles it grants (C{None}
    when it grants neither, where pynetdicom prints nothing).
    """
    if info is None or not info.roleSelections:
        return "Default"
    roles = {item.sopClassUID: item for item in info.roleSelections}
    item = roles.get(abstractSyntax)  # type: ignore[arg-type]
    if item is None:
        return "Default"
    granted = [
        name for name, on in (("SCP", item.scpRole), ("SCU", item.scuRole)) if on
    ]
    return "/".join(granted) or "None"


def _abstractLine(pc: PresentationContextRQ | None) -> str:
    if pc is None or pc.abstractSyntax is None:
        return "    Abstract Syntax: None"
    return f"    Abstract Syntax: ={_uidName(pc.abstractSyntax)}"


def _extendedLines(info: UserInformation | None, heading: str) -> list[str]:
    items = info.sopClassExtendedNegotiations if info is not None else ()
    if not items:
        return [f"{heading}: None"]
    lines = [f"{heading}:"]
    for item in items:
        # pynetdicom prints this UID raw, not by name.
        lines.append(f"  SOP Class: ={valueText(item.sopClassUID)}")
        lines.extend(_hexDump(item.applicationInformation))
    return lines


def _asyncLines(info: UserInformation | None, heading: str) -> list[str]:
    window = info.asyncOperationsWindow if info is not None else None
    if window is None:
        return [f"{heading}: None"]
    return [
        f"{heading}:",
        f"  Maximum Invoked Operations:     {window.maxOperationsInvoked}",
        f"  Maximum Performed Operations:   {window.maxOperationsPerformed}",
    ]


def _identityLines(info: UserInformation | None) -> list[str]:
    identity = info.userIdentity if info is not None else None
    if identity is None:
        return ["Requested User Identity Negotiation: None"]
    kind = identity.identityType
    primary = identity.primaryField
    lines = [
        "Requested User Identity Negotiation:",
        f"  Authentication Mode: {kind} - {_IDENTITY_TYPES.get(kind, NO_VALUE)}",
    ]
    if kind in (1, 2):
        lines.append(f"  Username: [{_peerText(primary)}]")
    if kind == 2:
        # Never the passcode itself: it is a secret.
        lines.append(f"  Password: [{len(identity.secondaryField)} bytes hidden]")
    elif kind == 3:
        lines.append(f"  Kerberos Service Ticket (not dumped) length: {len(primary)}")
    elif kind == 4:
        lines.append(f"  SAML Assertion (not dumped) length: {len(primary)}")
    elif kind == 5:
        lines.append(f"  JSON Web Token (not dumped) length: {len(primary)}")
    answer = "Yes" if identity.positiveResponseRequested else "None"
    lines.append(f"  Positive Response Requested: {answer}")
    return lines


def _commonExtendedLines(info: UserInformation | None) -> list[str]:
    common = info.sopClassCommonExtendedNegotiations if info is not None else ()
    if not common:
        return ["Requested Common Extended Negotiation: None"]
    lines = ["Requested Common Extended Negotiation:"]
    for item in common:
        lines.append(f"  SOP Class: ={_uidName(item.sopClassUID)}")
        lines.append(f"    Service Class: ={_uidName(item.serviceClassUID)}")
        if item.relatedGeneralSOPClassUIDs:
            lines.append("    Related General SOP Class(es):")
            lines.extend(f"      ={_uidName(uid)}" for uid in item.relatedGeneralSOPClassUIDs)
        else:
            lines.append("    Related General SOP Classes: None")
    return lines


def associateRQLines(rq: AssociateRQ) -> list[str]:
    """
    echoscp's C{-d} block for an incoming A-ASSOCIATE-RQ, from
    C{Request Parameters:} to the END banner, without prefixes.
    """
    info = rq.userInformation
    classUID = info.implementationClassUID if info is not None else None
    version = info.implementationVersionName if info is not None else None
    maxLength = info.maximumLength if info is not None else None
    contexts = sorted(rq.presentationContexts, key=lambda pc: pc.contextID)
    lines = [
        "Request Parameters:",
        banner("INCOMING A-ASSOCIATE-RQ PDU"),
        f"Their Implementation Class UID:      {valueText(classUID or 'unknown')}",
        f"Their Implementation Version Name:   {valueText(version or 'unknown')}",
        f"Application Context Name:    {valueText(rq.applicationContextName)}",
        f"Calling Application Name:    {valueText(rq.callingAETitle)}",
        f"Called Application Name:     {valueText(rq.calledAETitle)}",
        f"Their Max PDU Receive Size:  {maxLength}",
        "Presentation Context:" if len(contexts) == 1 else "Presentation Contexts:",
    ]
    for pc in contexts:
        lines.append(f"  Context ID:        {pc.contextID} (Proposed)")
        lines.append(_abstractLine(pc))
        lines.append(f"    Proposed SCP/SCU Role: {_role(info, pc.abstractSyntax)}")
        syntaxes = pc.transferSyntaxes
        lines.append(
            "    Proposed Transfer Syntax:"
            if len(syntaxes) == 1
            else "    Proposed Transfer Syntaxes:"
        )
        lines.extend(f"      ={_uidName(ts)}" for ts in syntaxes)
    lines.extend(_extendedLines(info, "Requested Extended Negotiation"))
    lines.extend(_commonExtendedLines(info))
    lines.extend(
        _asyncLines(info, "Requested Asynchronous Operations Window Negotiation")
    )
    lines.extend(_identityLines(info))
    # Items PS3.8 says to skip; pynetdicom cannot decode them at all.
    for unknown in rq.unknownItems:
        lines.append(
            f"Ignored Unknown Item: type 0x{unknown.itemType:02X}, "
            f"{len(unknown.data)} bytes"
        )
    for unknown in info.unknownSubItems if info is not None else ():
        lines.append(
            f"Ignored Unknown User Information Sub-item: type "
            f"0x{unknown.itemType:02X}, {len(unknown.data)} bytes"
        )
    lines.append(banner("END A-ASSOCIATE-RQ PDU"))
    return lines


def associateACLines(rq: AssociateRQ | None, ac: AssociateAC) -> list[str]:
    """
    echoscp's C{-d} block for an outgoing A-ASSOCIATE-AC, from C{Accept
    Parameters:} to the END banner, without prefixes. Abstract syntaxes come
    from C{rq}'s context with the same ID. Unlike echoscp, the responding
    name is the AE title the AC carries, not a placeholder.
    """
    info = ac.userInformation
    requested = {pc.contextID: pc for pc in rq.presentationContexts} if rq else {}
    lines = [
        "Accept Parameters:",
        banner("OUTGOING A-ASSOCIATE-AC PDU"),
        f"Our Implementation Class UID:      "
        f"{valueText(info.implementationClassUID if info else None)}",
    ]
    if info is not None and info.implementationVersionName:
        lines.append(
            f"Our Implementation Version Name:   {valueText(info.implementationVersionName)}"
        )
    lines += [
        f"Application Context Name:    {valueText(ac.applicationContextName)}",
        f"Responding Application Name: {valueText(ac.calledAETitle)}",
        f"Our Max PDU Receive Size:    {info.maximumLength if info else None}",
        (
            "Presentation Contexts:"
            if ac.presentationContexts
            else "Presentation Contexts: None"
        ),
    ]
    for item in sorted(ac.presentationContexts, key=lambda item: item.contextID):
        result = contextResultEchoscp(item.result)
        proposed = requested.get(item.contextID)
        lines.append(f"  Context ID:        {item.contextID} ({result})")
        lines.append(_abstractLine(proposed))
        if item.result == 0:
            abstract = proposed.abstractSyntax if proposed else None
            lines.append(f"    Accepted SCP/SCU Role: {_role(info, abstract)}")
            lines.append(
                f"    Accepted Transfer Syntax: ={_uidName(item.transferSyntax)}"
            )
    lines.extend(_extendedLines(info, "Accepted Extended Negotiation"))
    lines.extend(
        _asyncLines(info, "Accepted Asynchronous Operations Window Negotiation")
    )
    response = info is not None and info.userIdentityResponse is not None
    lines.append(f"User Identity Negotiation Response: {'Yes' if response else 'None'}")
    lines.append(banner("END A-ASSOCIATE-AC PDU"))
    return lines


def associateRJLines(result: int, source: int, diagnostic: int) -> list[str]:
    """
    echoscp's C{-d} block for an outgoing A-ASSOCIATE-RJ, without prefixes.
    """
    return [
        "Reject Parameters:",
        banner("OUTGOING A-ASSOCIATE-RJ PDU"),
        f"Result:    {rejectResultEchoscp(result)}",
        f"Source:    {rejectSourceEchoscp(source)}",
        f"Reason:    {rejectReasonEchoscp(source, diagnostic)}",
        banner("END A-ASSOCIATE-RJ PDU"),
    ]


def abortLines(direction: str, source: int, reason: int | None) -> list[str]:
    """
    echoscp's C{-d} block for an A-ABORT, without prefixes.

    @param direction: C{"INCOMING"} or C{"OUTGOING"}.
    """
    return [
        "Abort Parameters:",
        banner(f"{direction} A-ABORT PDU"),
        f"Abort Source: {abortSourceEchoscp(source)}",
        f"Abort Reason: {abortReasonEchoscp(source, reason)}",
        banner("END A-ABORT PDU"),
    ]


# --- the DIMSE block ------------------------------------------------------------

#: The lines after "Message Type" for each request, as pynetdicom prints them
#: (it prints no C-MOVE-RQ block; ours follows C-GET-RQ's). A word is a
#: command element keyword, shown only if present when it starts with C{?}
#: and by UID name with C{=}; or C{@context}, C{@priority}, C{@status},
#: C{@attributes}, or C{@data:<label>} (whether a data set follows).
_FIND = "MessageID =AffectedSOPClassUID @data:Identifier @priority"
_DIMSE_LAYOUTS: dict[int, str] = {
    CommandField.C_ECHO_RQ: "@context MessageID @data:Data_Set",
    CommandField.C_STORE_RQ: "@context MessageID =AffectedSOPClassUID "
    "AffectedSOPInstanceUID ?MoveOriginatorApplicationEntityTitle "
    "@data:Data_Set @priority",
    CommandField.C_FIND_RQ: _FIND,
    CommandField.C_GET_RQ: _FIND,
    CommandField.C_MOVE_RQ: _FIND.replace("@data", "MoveDestination @data"),
    CommandField.C_CANCEL_RQ: "MessageIDBeingRespondedTo",
    CommandField.N_EVENT_REPORT_RQ: "MessageID =AffectedSOPClassUID "
    "AffectedSOPInstanceUID EventTypeID @data:Event_Information",
    CommandField.N_GET_RQ: "MessageID =RequestedSOPClassUID "
    "RequestedSOPInstanceUID @attributes",
    CommandField.N_SET_RQ: "MessageID =RequestedSOPClassUID "
    "RequestedSOPInstanceUID @data:Modification_List",
    CommandField.N_ACTION_RQ: "MessageID =RequestedSOPClassUID "
    "RequestedSOPInstanceUID ActionTypeID @data:Action_Information",
    CommandField.N_CREATE_RQ: "MessageID =?AffectedSOPClassUID "
    "?AffectedSOPInstanceUID @data:Attribute_List",
    CommandField.N_DELETE_RQ: "MessageID =RequestedSOPClassUID RequestedSOPInstanceUID",
}
#: Anything else (a response, an unknown command): the fields it has.
_OTHER_LAYOUT = (
    "@context ?MessageID ?MessageIDBeingRespondedTo =?AffectedSOPClassUID "
    "?@status @data:Data_Set"
)
_LABELS = {
    "@context": "Presentation Context ID",
    "@priority": "Priority",
    "@status": "Status",
    "@attributes": "Attribute Identifier List",
    "MessageID": "Message ID",
    "MessageIDBeingRespondedTo": "Message ID Being Responded To",
    "AffectedSOPClassUID": "Affected SOP Class UID",
    "AffectedSOPInstanceUID": "Affected SOP Instance UID",
    "RequestedSOPClassUID": "Requested SOP Class UID",
    "RequestedSOPInstanceUID": "Requested SOP Instance UID",
    "MoveOriginatorApplicationEntityTitle": "Move Originator",
    "MoveDestination": "Move Destination",
    "EventTypeID": "Event Type ID",
    "ActionTypeID": "Action Type ID",
}
_PRIORITIES = {2: "Low", 0: "Medium", 1: "High"}
_PRIORITY, _STATUS = tag("Priority"), tag("Status")
_ATTRIBUTES = tag("AttributeIdentifierList")


def _messageType(commandField: int) -> str:
    try:
        family, kind = CommandField(commandField).name.rsplit("_", 1)
    except ValueError:
        return f"0x{commandField:04X}"
    return f"{family.replace('_', '-')} {kind}"


def _dimseLine(message: DIMSEMessage, word: str) -> str | None:
    """
    One line of a DIMSE block (see L{_DIMSE_LAYOUTS}), C{None} to leave it
    out.
    """
    key, _, dataLabel = word.lstrip("=?").partition(":")
    command = message.command
    if key == "@data":
        return f"{dataLabel.replace('_', ' '):<30}: {'Present' if message.dataSet else 'None'}"
    if key == "@context":
        value = str(message.contextID)
    elif key == "@priority":
        raw = command.get(_PRIORITY)
        value = _PRIORITIES[raw] if raw in _PRIORITIES else valueText(raw)
    elif key == "@attributes":
        raw = command.get(_ATTRIBUTES)
        value = "None" if raw is None else f"({len(raw)} Attribute Tag(s))"  # type: ignore[arg-type]
    else:
        raw = command.get(_STATUS if key == "@status" else tag(key))
        if raw is None and "?" in word:
            return None
        if key == "@status" and isinstance(raw, int):
            value = f"0x{raw:04X}"
        elif word.startswith("=") and isinstance(raw, str):
            value = _uidName(raw)
        else:
            value = valueText(raw)
    return f"{_LABELS[key]:<30}: {value}"


def dimseLines(message: DIMSEMessage) -> list[str]:
    """
    echoscp's C{-d} block for a received DIMSE message, without prefixes.
    The C{pydicom.read_dataset()} line echoscp prints first is left out:
    the command set is not read with pydicom.
    """
    words = _DIMSE_LAYOUTS.get(message.commandField, _OTHER_LAYOUT).split()
    lines = [
        banner("INCOMING DIMSE MESSAGE"),
        f"{'Message Type':<30}: {_messageType(message.commandField)}",
    ]
    lines += [line for w in words if (line := _dimseLine(message, w)) is not None]
    lines.append(banner("END DIMSE MESSAGE"))
    return lines

