# -*- test-case-name: tests.test_dimse -*-
"""
DIMSE messages over P-DATA: reassembly of PDVs into messages, fragmentation
of outgoing messages into P-DATA-TF PDUs (PS3.8 Annex E), and the refusal
of requests we do not serve.

A DIMSE message is a command set followed by an optional data set
(PS3.7 §6.3). The command set's codec is L{dicomecho.association.commandset};
its names are exported here too, as the one place to import DIMSE from.

Errors are L{DIMSEError}s that say which A-ABORT to send (PS3.8 §9.3.8,
Table 9-26).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Collection, Mapping

from dicomecho.association.commandset import (
    NO_DATA_SET,
    CommandField,
    CommandSetError,
    DIMSEError,
    Status,
    decodeCommandSet,
    encodeCommandSet,
    tag,
)
from dicomecho.wire.errors import AbortReason, AbortSource, LocalProtocolError
from dicomecho.wire.pdu import PresentationDataValue

__all__ = [
    "DIMSEResponse",
    "encodeResponse",
    "PresentationContextError",
    "FragmentError",
    "MessageTooLargeError",
    "DIMSEMessage",
    "MessageAssembler",
    "fragment",
    "refusalResponse",
]

_AFFECTED_SOP_CLASS = tag("AffectedSOPClassUID")
_REQUESTED_SOP_CLASS = tag("RequestedSOPClassUID")
_COMMAND_FIELD = tag("CommandField")
_MESSAGE_ID = tag("MessageID")
_MESSAGE_ID_RESPONDED = tag("MessageIDBeingRespondedTo")
_DATA_SET_TYPE = tag("CommandDataSetType")
_STATUS = tag("Status")
_AFFECTED_SOP_INSTANCE = tag("AffectedSOPInstanceUID")
_REQUESTED_SOP_INSTANCE = tag("RequestedSOPInstanceUID")


class PresentationContextError(DIMSEError):
    """
    A PDV names a presentation context that was not accepted
    (PS3.8 §9.3.5.1, Table 9-23; §7.1.1.13). Abort: service-provider,
    invalid-PDU-parameter-value.
    """

    abortSource = AbortSource.SERVICE_PROVIDER
    abortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE


class FragmentError(DIMSEError):
    """
    A PDV's message control header (PS3.8 Annex E.2) is out of order: a
    data-set fragment before its command is complete, or a command fragment
    while the data set is expected (PS3.8 Annex E.1: the command comes
    first, then the data set). The P-DATA-TF itself is expected in this
    state, so the fault is a PDU parameter with an unexpected value:
    service-provider, unexpected-PDU-parameter (PS3.8 Table 9-26).
    """

    abortSource = AbortSource.SERVICE_PROVIDER
    abortReason = AbortReason.UNEXPECTED_PDU_PARAMETER


class MessageTooLargeError(DIMSEError):
    """
    A command or data set grew beyond our configured cap. Treated like a
    P-DATA-TF above our maximum length (L{dicomecho.wire.errors.PDULengthError}):
    service-provider, invalid-PDU-parameter-value (PS3.8 Table 9-26).
    """

    abortSource = AbortSource.SERVICE_PROVIDER
    abortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE


# --- messages and their reassembly (PS3.8 Annex E) ---------------------------


@dataclass(frozen=True, slots=True)
class DIMSEMessage:
    """
    One complete DIMSE message as received (PS3.7 §6.3).

    @ivar contextID: the presentation context its PDVs used.
    @ivar command: the decoded command set (see L{decodeCommandSet}).
    @ivar dataSet: the data set's bytes, encoded in the context's transfer
        syntax, or C{None} if the command announced none.
    """

    contextID: int
    command: Mapping[int, object]
    dataSet: bytes | None

    @property
    def commandField(self) -> int:
        """
        CommandField (0000,0100).
        """
        return self.command[_COMMAND_FIELD]  # type: ignore[return-value]

    @property
    def messageID(self) -> int | None:
        """
        MessageID (0000,0110), C{None} if absent (as in responses).
        """
        return self.command.get(_MESSAGE_ID)  # type: ignore[return-value]

    @property
    def affectedSOPClassUID(self) -> str | None:
        """
        AffectedSOPClassUID (0000,0002), C{None} if absent.
        """
        return self.command.get(_AFFECTED_SOP_CLASS)  # type: ignore[return-value]

    @property
    def hasDataSet(self) -> bool:
        """
        Whether CommandDataSetType (0000,0800) announces a data set.
        """
        return self.command.get(_DATA_SET_TYPE, NO_DATA_SET) != NO_DATA_SET


class _Partial:
    """
    A message being received on one presentation context.
    """

    __slots__ = ("fragments", "length", "command")

    def __init__(self) -> None:
        self.fragments: list[bytes] = []
        self.length = 0
        #: Set once the command is complete and a data set is expected.
        self.command: dict[int, object] | None = None


@dataclass(frozen=True, slots=True)
class DIMSEResponse:
    """
    A responder's answer, for the association to encode and send on the request's context.

    @ivar command: the response command set, as for
        L{dicomecho.association.commandset.encodeCommandSet}.
    @ivar dataSet: the encoded data set, or C{None}; when not C{None} the
        command's CommandDataSetType must say so.
    """

    command: Mapping[int, object]
    dataSet: bytes | None = None



class MessageAssembler:
    """
    Reassemble PDVs into L{DIMSEMessage}s (PS3.8 Annex E).

    Feed every PDV of every P-DATA-TF, in order, to L{receive}. A message
    is its command fragments up to the one with the last-fragment bit, then,
    if CommandDataSetType is not 0x0101, its data-set fragments up to the
    last one. State is kept per presentation context, so messages on
    different contexts may interleave (PS3.8 Annex E.1 forbids senders to
    do so; tolerating it costs nothing). Odd-length fragments, which
    Annex E.1 also forbids, are accepted: pynetdicom sends them when the
    maximum PDU length is odd. Several messages in one P-DATA-TF are
    returned one per L{receive} call.

    Memory is bounded: each message's command and data set by the caps, and
    all partial messages together by the sum of the caps.
    """

    # One per association: no instance dictionary.
    __slots__ = ("_accepted", "maxCommandLength", "maxDataSetLength", "_partial", "_buffered")

    def __init__(
        self,
        acceptedContextIDs: Collection[int],
        maxCommandLength: int = 65536,
        maxDataSetLength: int = 4 * 1024 * 1024,
    ) -> None:
        """
        @param acceptedContextIDs: the IDs of the contexts accepted in the
            A-ASSOCIATE-AC; a PDV on any other is an error.
        @param maxCommandLength: largest command set accepted, in bytes.
        @param maxDataSetLength: largest data set accepted, in bytes.
        """
        self._accepted = frozenset(acceptedContextIDs)
        self.maxCommandLength = maxCommandLength
        self.maxDataSetLength = maxDataSetLength
        self._partial: dict[int, _Partial] = {}
        self._buffered = 0

    @property
    def inProgress(self) -> bool:
        """
        Whether any message is partially received.
        """
        return bool(self._partial)

    def receive(self, pdv: PresentationDataValue) -> DIMSEMessage | None:
        """
        Take one PDV; return the message it completes, else C{None}.

        @raise PresentationContextError: the PDV's context was not accepted.
        @raise FragmentError: a fragment arrived out of order.
        @raise MessageTooLargeError: a cap would be exceeded.
        @raise CommandSetError: a completed command set is malformed.
        """
        contextID = pdv.contextID
        if contextID not in self._accepted:
            raise PresentationContextError(f"PDV on unaccepted context {contextID}")
        partial = self._partial.get(contextID)
        data = pdv.data
        if partial is None and pdv.isCommand:
            if pdv.isLastFragment:
                # Fast path: a whole command in one PDV, as every peer sends
                # a C-ECHO-RQ.
                if len(data) > self.maxCommandLength:
                    raise self._tooLarge("command", len(data))
                return self._commandComplete(contextID, data, None)
            partial = self._partial[contextID] = _Partial()
        expectingData = partial is not None and partial.command is not None
        if pdv.isCommand == expectingData:
            # PS3.8 Annex E.1: all of the command, then all of the data set.
            if partial is not None:
                self._discard(contextID, partial)
            raise FragmentError(
                f"{'command' if pdv.isCommand else 'data-set'} fragment on "
                f"context {contextID} while the "
                f"{'data set' if expectingData else 'command'} is expected"
            )
        assert partial is not None
        limit = self.maxDataSetLength if expectingData else self.maxCommandLength
        total = self.maxCommandLength + self.maxDataSetLength
        if partial.length + len(data) > limit or self._buffered + len(data) > total:
            self._discard(contextID, partial)
            what = "data set" if expectingData else "command"
            raise self._tooLarge(what, partial.length + len(data))
        partial.fragments.append(data)
        partial.length += len(data)
        self._buffered += len(data)
        if not pdv.isLastFragment:
            return None
        self._discard(contextID, partial)
        joined = b"".join(partial.fragments)
        if partial.command is None:
            return self._commandComplete(contextID, joined, partial)
        return DIMSEMessage(contextID, partial.command, joined)

    def _commandComplete(
        self, contextID: int, data: bytes, partial: _Partial | None
    ) -> DIMSEMessage | None:
        command = decodeCommandSet(data)
        if command[_DATA_SET_TYPE] == NO_DATA_SET:
            return DIMSEMessage(contextID, command, None)
        if partial is None:
            partial = _Partial()
        else:
            partial.fragments = []
            partial.length = 0
        partial.command = command
        self._partial[contextID] = partial
        return None

    def _discard(self, contextID: int, partial: _Partial) -> None:
        del self._partial[contextID]
        self._buffered -= partial.length

    def _tooLarge(self, what: str, length: int) -> MessageTooLargeError:
        return MessageTooLargeError(
            f"{what} of at least {length} bytes is over the limit (command "
            f"{self.maxCommandLength}, data set {self.maxDataSetLength}, all "
            f"partial messages their sum)"
        )


# --- sending (PS3.8 §9.3.5, Annex E) ------------------------------------------

_PDU_AND_PDV_HEADER = struct.Struct(">BxIIBB")


def fragment(
    contextID: int, command: bytes, dataSet: bytes | None, peerMaxPDULength: int
) -> list[bytes]:
    """
    Encode a message as P-DATA-TF PDUs, one PDV per PDU (as pynetdicom).

    Each PDV carries at most C{peerMaxPDULength - 6} bytes, rounded down to
    an even number: PS3.8 Annex E.1 wants even fragments, and the PDV item
    header (6 bytes) must fit in the peer's maximum variable field length
    (PS3.8 §9.3.5, D.1). Command PDVs have control header 0x01 (0x03 on the
    last), data-set PDVs 0x00 (0x02 on the last) (PS3.8 Annex E.2).

    @param peerMaxPDULength: the peer's Maximum Length sub-item; 0 means
        unlimited: one PDV for the command and one for the data set.
    @raise ValueError: if C{peerMaxPDULength} is 1 to 7, too small for even
        2-byte fragments.
    @raise LocalProtocolError: if C{contextID} does not fit a byte.
    """
    if peerMaxPDULength < 0 or 0 < peerMaxPDULength < 8:
        raise ValueError(f"peer maximum PDU length {peerMaxPDULength} is below 8")
    if not 0 <= contextID <= 0xFF:
        raise LocalProtocolError(f"context ID {contextID} does not fit a byte")
    pack = _PDU_AND_PDV_HEADER.pack
    pdus = []
    for data, control in ((command, 0x01), (dataSet, 0x00)):
        if data is None:
            continue
        total = len(data)
        size = (peerMaxPDULength - 6) & ~1 if peerMaxPDULength else max(total, 1)
        start = 0
        while True:
            chunk = data[start : start + size]
            start += size
            last = start >= total
            n = len(chunk)
            pdus.append(
                pack(0x04, n + 6, n + 2, contextID, control | (0x02 if last else 0))
                + chunk
            )
            if last:
                break
    return pdus


# --- answering requests we do not serve (PS3.7 §9.3, §10.3) -----------------

_REQUESTS = frozenset(f for f in CommandField if not f & 0x8000) - {
    CommandField.C_CANCEL_RQ
}

# PS3.7 §10.3.2-10.3.4, §10.3.6: these requests name their target with
# Requested* UIDs; the response carries them as Affected*.
_REQUESTED_TO_AFFECTED = frozenset(
    {CommandField.N_GET_RQ, CommandField.N_SET_RQ}
    | {CommandField.N_ACTION_RQ, CommandField.N_DELETE_RQ}
)


def refusalResponse(request: DIMSEMessage, status: int) -> dict[int, object] | None:
    """
    The response command answering a DIMSE request with a failure status.

    The response has the request's CommandField with bit 0x8000 set,
    MessageIDBeingRespondedTo, no data set, C{status}, and the request's
    Affected SOP Class/Instance UIDs (from the Requested ones for N-GET,
    N-SET, N-ACTION and N-DELETE) when present (PS3.7 §9.3, §10.3).

    @return: C{None} for C-CANCEL-RQ, which has no response (PS3.7
        §9.3.2.3), and for messages that are themselves responses.
    @raise CommandSetError: if the request has no MessageID or an unknown
        CommandField.
    """
    field = request.commandField
    if field & 0x8000 or field == CommandField.C_CANCEL_RQ:
        return None
    if field not in _REQUESTS:
        raise CommandSetError(f"unknown CommandField 0x{field:04X} (PS3.7 Annex E)")
    messageID = request.messageID
    if messageID is None:
        raise CommandSetError(f"request 0x{field:04X} has no MessageID (0000,0110)")
    command = request.command
    response: dict[int, object] = {
        _COMMAND_FIELD: field | 0x8000,
        _MESSAGE_ID_RESPONDED: messageID,
        _DATA_SET_TYPE: NO_DATA_SET,
        _STATUS: status,
    }
    renamed = field in _REQUESTED_TO_AFFECTED
    for affected, requested in (
        (_AFFECTED_SOP_CLASS, _REQUESTED_SOP_CLASS),
        (_AFFECTED_SOP_INSTANCE, _REQUESTED_SOP_INSTANCE),
    ):
        if affected in command:
            response[affected] = command[affected]
        elif renamed and requested in command:
            response[affected] = command[requested]
    return response


def encodeResponse(
    response: DIMSEResponse | None, request: DIMSEMessage, peerMaxPDULength: int
) -> list[bytes]:
    """
    The P-DATA-TF PDUs of C{response} to C{request}, or for no response a
    refusal (PS3.7 C.4.1.1.4, unrecognized operation; none for a request
    that is itself a response).
    """
    if response is None:
        command = refusalResponse(request, Status.UNRECOGNIZED_OPERATION)
        if command is None:
            return []
        dataSet = None
    else:
        command, dataSet = response.command, response.dataSet
    return fragment(request.contextID, encodeCommandSet(command), dataSet, peerMaxPDULength)
