# -*- test-case-name: tests.test_replay -*-
"""
The two fast paths, both exact: an A-ASSOCIATE-RQ seen before is answered
with the AC it was given (L{AcceptanceCache}), and an echo that repeats the
previous one but for its MessageID gets the previous response patched
(L{ResponseReplayer}).

Replaying a response.

An SCU that echoes on an established association sends, message after
message, the same P-DATA-TF bytes except the value of MessageID
(0000,0110). When the service's answer depends only on the request and
copies its MessageID into MessageIDBeingRespondedTo (0000,0120), as
Verification's does, the response to such a repeat is the previous response
with those two bytes replaced.

L{ResponseTemplate} is that rule, learned from one request and the response
the full path (framer, PDU decoder, state machine, DIMSE, responder, encoder)
gave it. It answers only a P-DATA-TF body that is byte for byte the learned
one except those two bytes, so what it returns is what the full path would
have returned (tests/test_replay.py checks this for every MessageID).

This bypasses the layers for speed: the full path costs about five times as
much CPU per echo (benchmarks/hotpath.py), a large part of an echo's cost
in a Twisted server. The protocol uses it only where the full path would
change nothing else (see L{dicomecho.server.protocol}).
"""

from __future__ import annotations

import struct

from dicomecho.association.negotiation import Acceptance, AssociationPolicy

__all__ = ["ResponseTemplate", "ResponseReplayer", "AcceptanceCache"]

_ELEMENT_HEADER = struct.Struct("<HHI")
_MESSAGE_ID = 0x0110
_MESSAGE_ID_RESPONDED = 0x0120

#: Control header of a PDV carrying a whole command: command, last fragment
#: (PS3.8 Annex E.2).
_WHOLE_COMMAND = 0x03


def _soleCommandPDV(data: bytes, start: int) -> int | None:
    """
    Where the command set of the one PDV at C{data[start:]} begins, if that
    PDV is the last of C{data} and carries a whole command.
    """
    if len(data) - start < 6:
        return None
    (length,) = struct.unpack_from(">I", data, start)
    if start + 4 + length != len(data) or data[start + 5] != _WHOLE_COMMAND:
        return None
    return start + 6


def _valueOffset(data: bytes, start: int, element: int) -> int | None:
    """
    The offset of the 2-byte value of group-0000 C{element} in the Implicit
    VR Little Endian command set at C{data[start:]}, if it is there with a
    value length of 2.
    """
    end = len(data)
    position = start
    while end - position >= 8:
        group, found, length = _ELEMENT_HEADER.unpack_from(data, position)
        position += 8
        if group != 0 or found > element:
            return None
        if found == element:
            return position if length == 2 and position + 2 <= end else None
        position += length
    return None


class ResponseTemplate:
    """
    A response learned from a request, replayable for requests that differ
    from it only in the MessageID value.
    """

    __slots__ = ("_length", "_offset", "_requestHead", "_requestTail", "_head", "_tail")

    def __init__(self, request: bytes, offset: int, response: bytes, responseOffset: int):
        self._length = len(request)
        self._offset = offset
        self._requestHead = request[:offset]
        self._requestTail = request[offset + 2 :]
        self._head = response[:responseOffset]
        self._tail = response[responseOffset + 2 :]

    @classmethod
    def learn(cls, request: bytes, response: bytes) -> ResponseTemplate | None:
        """
        The template for a request and the response it got, or C{None} if
        the pair does not have the shape a template needs.

        @param request: a P-DATA-TF body (after the 6-byte PDU header)
            holding exactly one PDV: a whole command set with MessageID.
        @param response: a whole P-DATA-TF PDU holding exactly one PDV: a
            whole command set whose MessageIDBeingRespondedTo equals the
            request's MessageID.
        """
        commandStart = _soleCommandPDV(request, 0)
        if commandStart is None or len(response) < 6 or response[0] != 0x04:
            return None
        responseStart = _soleCommandPDV(response, 6)
        if responseStart is None:
            return None
        offset = _valueOffset(request, commandStart, _MESSAGE_ID)
        responseOffset = _valueOffset(response, responseStart, _MESSAGE_ID_RESPONDED)
        if offset is None or responseOffset is None:
            return None
        if request[offset : offset + 2] != response[responseOffset : responseOffset + 2]:
            # The responder did not copy the MessageID: not a template.
            return None
        return cls(request, offset, response, responseOffset)

    def respond(self, request: bytes) -> bytes | None:
        """
        The response to C{request} (a P-DATA-TF body), or C{None} if it is
        not the learned request with another MessageID.
        """
        if (
            len(request) != self._length
            or not request.startswith(self._requestHead)
            or not request.endswith(self._requestTail)
        ):
            return None
        offset = self._offset
        return self._head + request[offset : offset + 2] + self._tail


class ResponseReplayer:
    """
    One association's replay state: the last request answered by the full
    path and its response, and the template learned from them once a
    request of the same length follows (so an association that sends one
    echo pays nothing for learning).
    """

    __slots__ = ("_template", "_request", "_response")

    def __init__(self) -> None:
        self._template: ResponseTemplate | None = None
        self._request: bytes | None = None
        self._response: bytes | None = None

    def record(self, request: bytes, response: bytes) -> None:
        """
        The full path answered the P-DATA-TF body C{request}, alone, with
        the one PDU C{response}, and would answer the same way to a repeat.
        """
        self._request = request
        self._response = response

    def respond(self, request: bytes) -> bytes | None:
        """
        The response to the P-DATA-TF body C{request}, if it repeats a
        recorded request; else C{None} and the full path must answer it.
        """
        template = self._template
        if template is not None:
            response = template.respond(request)
            if response is not None:
                return response
        learned = self._request
        if learned is None or len(learned) != len(request) or self._response is None:
            return None
        template = ResponseTemplate.learn(learned, self._response)
        self._request = self._response = None
        if template is None:
            return None
        self._template = template
        return template.respond(request)


class AcceptanceCache:
    """
    The acceptances of recent A-ASSOCIATE-RQs, with their encoded ACs, by
    the bytes of the request's body.

    Decoding a request, negotiating it and encoding the AC are pure, and an
    SCU sends the same request every time: an acceptance found here is the
    one the full path would give (the key is the whole body, so the AC's
    fields copied from the request, its AE titles and reserved field, are
    always the requestor's own), as long as the policy is the same and the
    server is not at capacity (both the caller's to check, the policy by
    passing it). Only acceptances are kept: rejections and invalid requests
    take the full path, and are logged as such. This saved a third of the
    CPU of a whole association (benchmarks/hotpath.py: 70 to 47 us).

    Each entry also holds an object the caller shares among the
    associations accepted this way (the protocol keeps its
    L{ResponseReplayer} there: the same request, policy
    and acceptance give the same responses).

    Bounded: at most C{maxEntries} requests of at most C{maxBodyLength}
    bytes; the oldest entry makes room for a new one.

    What the body does not decide stays the caller's to check on a hit:
    the source address against the policy's access list, and a user
    identity, which is never answered from here (the protocol neither
    looks up nor remembers a request whose identity it checks).
    """

    def __init__(self, maxEntries: int = 64, maxBodyLength: int = 16384) -> None:
        self.maxEntries = maxEntries
        self.maxBodyLength = maxBodyLength
        self._policy: AssociationPolicy | None = None
        self._entries: dict[bytes, tuple[Acceptance, bytes, object]] = {}

    def get(
        self, body: bytes, policy: AssociationPolicy
    ) -> tuple[Acceptance, bytes, object] | None:
        """
        The acceptance of the request with this body under C{policy}, its
        encoded AC and the shared object, if known.
        """
        if policy is not self._policy:
            return None
        return self._entries.get(body)

    def remember(
        self,
        body: bytes,
        policy: AssociationPolicy,
        acceptance: Acceptance,
        ac: bytes,
        shared: object = None,
    ) -> None:
        """
        Keep the acceptance of the request with this body under C{policy},
        its encoded AC, and an object to share.
        """
        if len(body) > self.maxBodyLength or self.maxEntries <= 0:
            return
        entries = self._entries
        if policy is not self._policy:
            entries.clear()
            self._policy = policy
        if body not in entries and len(entries) >= self.maxEntries:
            del entries[next(iter(entries))]
        entries[body] = (acceptance, ac, shared)
