"""
Whole associations between DCMTK's C{echoscu} and a running
L{DICOMServerFactory}: plain echoes, proposed transfer syntaxes and
presentation contexts, repeats, the smallest maximum PDU, abort, the
transfer syntax preference and AE title checks, read from echoscu's exit
status and (debug) output.

Each test talks over loopback to dicomecho's Twisted server, started by
C{tests.support.serve} in a subprocess (L{FactoryServer}). Every test
checks both ends: what the peer reports and the C{EVENT} lines the server
logged for that association. One server with the default configuration is
shared by the module; servers with other options are started only where
the options differ. Every wait is bounded: subprocesses run with timeouts,
the server's startup and shutdown are timed, and a server that does not
stop is killed by its PID.
"""

from __future__ import annotations

import re

import pytest

from tests.support.associations import (  # noqa: F401 (fixtures)
    ECHOED,
    calledAEServer,
    callingAEServer,
    defaultServer,
    echoscu,
    names,
    preferLittleServer,
)
from tests.support.peers import runEchoscu
from tests.support.processes import runningServer


def dcmtkBlock(output: str, name: str) -> str:
    """
    DCMTK's debug dump of an A-ASSOCIATE-RQ or -AC (C{name}), between its
    BEGIN and END markers.
    """
    start = output.index(f"BEGIN {name}")
    return output[start : output.index(f"END {name}", start)]


def dcmtkContexts(block: str) -> list[tuple[int, str, list[str]]]:
    """
    The presentation contexts of a DCMTK dump: (ID, state, transfer syntax
    names), where the names are those listed as proposed (RQ) or the one
    accepted (AC).
    """
    contexts: list[tuple[int, str, list[str]]] = []
    for line in block.splitlines():
        text = line[2:].strip() if line.startswith("D:") else line.strip()
        found = re.match(r"Context ID:\s+(\d+) \((\w+)\)", text)
        if found:
            contexts.append((int(found[1]), found[2], []))
            continue
        found = re.match(r"Accepted Transfer Syntax:\s+(\S+)", text)
        if found and contexts:
            contexts[-1][2].append(found[1])
            continue
        if re.match(r"=[A-Za-z]", text) and contexts:
            contexts[-1][2].append(text)
    return contexts


@pytest.mark.peer
def test_echoscuPlain(echoscu, defaultServer):
    """
    A plain C{echoscu -aet MYSCU -aec ECHOSCP} associates, gets a
    successful C-ECHO response and releases; the server logs exactly that
    association: request, acceptance, one C-ECHO-RQ (message ID 1, context
    1), release.
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(echoscu, defaultServer.port())

    assert status == 0, output
    assert "Association Accepted (Max Send PDV: 16370)" in output, output
    assert "Received Echo Response (Success)" in output, output
    assert "Releasing Association" in output, output
    events = defaultServer.onlyAssociationSince(mark)
    assert names(events) == ECHOED, events
    echo = events[2].fields
    assert (echo["commandField"], echo["messageID"], echo["contextID"]) == (
        0x0030,
        1,
        1,
    )


@pytest.mark.peer
@pytest.mark.parametrize("count", [1, 2, 3, 10, 38])
def test_echoscuProposedTransferSyntaxes(echoscu, defaultServer, count):
    """
    With C{--propose-ts N} echoscu proposes N transfer syntaxes on its one
    context, Implicit VR Little Endian first; under the default preference
    the server accepts Implicit VR Little Endian whatever else is offered
    (echoscu's debug dump of our AC says so) and the echo succeeds.
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(
        echoscu, defaultServer.port(), "--propose-ts", str(count), verbosity="-d"
    )

    assert status == 0, output
    ((contextID, state, proposed),) = dcmtkContexts(
        dcmtkBlock(output, "A-ASSOCIATE-RQ")
    )
    assert (contextID, state) == (1, "Proposed")
    assert len(proposed) == count, proposed
    assert proposed[0] == "=LittleEndianImplicit"
    assert dcmtkContexts(dcmtkBlock(output, "A-ASSOCIATE-AC")) == [
        (1, "Accepted", ["=LittleEndianImplicit"])
    ]
    assert "Received Echo Response (Success)" in output, output
    assert names(defaultServer.onlyAssociationSince(mark)) == ECHOED


@pytest.mark.peer
def test_echoscuRepeat50(echoscu, defaultServer):
    """
    C{--repeat 50} sends 50 C-ECHO-RQs on one association; all 50 succeed,
    and the server logs 50 dimse-received events, message IDs 1 to 50, then
    the release.

    (echoscu takes about 2 s here: DCMTK leaves Nagle's algorithm on by
    default, and each request waits for a delayed ACK; with C{TCP_NODELAY=1}
    in its environment the 50 echoes take a few ms.)
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(echoscu, defaultServer.port(), "--repeat", "50")

    assert status == 0, output
    assert output.count("Received Echo Response (Success)") == 50, output
    assert output.count("Sending Echo Request") == 50, output
    events = defaultServer.onlyAssociationSince(mark)
    assert names(events) == (
        ["associate-rq", "association-accepted"]
        + ["dimse-received"] * 50
        + ["association-released"]
    )
    assert [e.fields["messageID"] for e in events[2:-1]] == list(range(1, 51))


@pytest.mark.peer
def test_echoscuMaxPDU4096(echoscu, defaultServer):
    """
    C{--max-pdu 4096} (DCMTK's smallest; the issue's C{-pdu}) is offered in
    echoscu's request, and the association and echo succeed. The C-ECHO-RSP
    is far shorter than 4096 bytes, so this does not fragment it; see
    L{test_pynetdicomTinyMaximumPDUFragments}.
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(
        echoscu, defaultServer.port(), "--max-pdu", "4096", verbosity="-d"
    )

    assert status == 0, output
    assert re.search(
        r"Our Max PDU Receive Size:\s+4096\n", dcmtkBlock(output, "A-ASSOCIATE-AC")
    ), output
    assert "Received Echo Response (Success)" in output, output
    assert names(defaultServer.onlyAssociationSince(mark)) == ECHOED


@pytest.mark.peer
def test_echoscuManyPresentationContexts(echoscu, defaultServer):
    """
    echoscu's largest request, C{--propose-pc 128 --propose-ts 16}: all 128
    Verification contexts (IDs 1 to 255) are accepted with Implicit VR
    Little Endian, and the echo on one of them succeeds.
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(
        echoscu,
        defaultServer.port(),
        "--propose-pc",
        "128",
        "--propose-ts",
        "16",
        verbosity="-d",
    )

    assert status == 0, output
    contexts = dcmtkContexts(dcmtkBlock(output, "A-ASSOCIATE-AC"))
    assert contexts == [
        (contextID, "Accepted", ["=LittleEndianImplicit"])
        for contextID in range(1, 256, 2)
    ]
    assert "Received Echo Response (Success)" in output, output
    events = defaultServer.onlyAssociationSince(mark)
    assert names(events) == ECHOED
    assert events[2].fields["contextID"] in range(1, 256, 2)


@pytest.mark.peer
def test_echoscuAbort(echoscu, defaultServer):
    """
    C{echoscu --abort} echoes, then ends with an A-ABORT instead of a
    release; the server logs association-aborted with source 0 (service
    user).
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(echoscu, defaultServer.port(), "--abort")

    assert status == 0, output
    assert "Received Echo Response (Success)" in output, output
    assert "Aborting Association" in output, output
    events = defaultServer.onlyAssociationSince(mark)
    assert names(events) == [
        "associate-rq",
        "association-accepted",
        "dimse-received",
        "association-aborted",
    ]
    assert events[-1].fields["source"] == 0


@pytest.mark.peer
@pytest.mark.parametrize(
    "count, accepted",
    [
        (1, "=LittleEndianImplicit"),
        (2, "=LittleEndianExplicit"),
        (38, "=LittleEndianExplicit"),
    ],
)
def test_echoscuPreferLittle(echoscu, preferLittleServer, count, accepted):
    """
    With C{transferSyntaxes=PREFER_LITTLE} (echoscp C{-xe}), Explicit VR
    Little Endian is chosen whenever echoscu proposes it alongside Implicit
    (C{--propose-ts 2} and up), and Implicit when it is the only one.
    """
    mark = preferLittleServer.mark()
    status, output = runEchoscu(
        echoscu, preferLittleServer.port(), "--propose-ts", str(count), verbosity="-d"
    )

    assert status == 0, output
    assert dcmtkContexts(dcmtkBlock(output, "A-ASSOCIATE-AC")) == [
        (1, "Accepted", [accepted])
    ]
    assert "Received Echo Response (Success)" in output, output
    assert names(preferLittleServer.onlyAssociationSince(mark)) == ECHOED


@pytest.mark.peer
def test_echoscuWrongCalledAETitle(echoscu, calledAEServer):
    """
    With C{requireCalledAETitle}, echoscu calling C{WRONG} is rejected
    permanently by the service user because the called AE title is not
    recognized (1, 1, 7), and exits with a failure status; the server logs
    the rejection and why.
    """
    mark = calledAEServer.mark()
    status, output = runEchoscu(echoscu, calledAEServer.port(), called="WRONG")

    assert status != 0, output
    assert "Association Rejected" in output, output
    assert "Result: Rejected Permanent, Source: Service User" in output, output
    assert "Reason: Called AE Title Not Recognized" in output, output
    events = calledAEServer.onlyAssociationSince(mark)
    assert names(events) == ["associate-rq", "association-rejected"]
    assert "called AE title 'WRONG'" in events[-1].fields["reason"]


@pytest.mark.peer
def test_echoscuDisallowedCallingAETitle(echoscu, callingAEServer):
    """
    With C{allowedCallingAETitles=["GOOD"]}, echoscu calling as BAD is
    rejected (1, 1, 3: calling AE title not recognized); as GOOD it echoes.
    """
    mark = callingAEServer.mark()
    status, output = runEchoscu(echoscu, callingAEServer.port(), calling="BAD")

    assert status != 0, output
    assert "Result: Rejected Permanent, Source: Service User" in output, output
    assert "Reason: Calling AE Title Not Recognized" in output, output
    events = callingAEServer.onlyAssociationSince(mark)
    assert names(events) == ["associate-rq", "association-rejected"]
    assert "calling AE title 'BAD'" in events[-1].fields["reason"]

    mark = callingAEServer.mark()
    status, output = runEchoscu(echoscu, callingAEServer.port(), calling="GOOD")
    assert status == 0, output
    assert "Received Echo Response (Success)" in output, output
    assert names(callingAEServer.onlyAssociationSince(mark)) == ECHOED


@pytest.mark.peer
def test_echoscuLargestRequestUnderDefaultCap(echoscu, defaultServer):
    """
    DCMTK's largest request (C{-ppc 128 -pts 38}: 128 contexts x 38
    transfer syntaxes, 129,697 bytes) is within the default caps: all 128
    contexts accepted and the echo succeeds.
    """
    status, output = runEchoscu(echoscu, defaultServer.port(), "-ppc", "128", "-pts", "38")
    assert status == 0, output
    assert "Received Echo Response (Success)" in output, output


@pytest.mark.peer
def test_echoscuLargestRequestAboveALowerCap(echoscu):
    """
    With C{maxAssociateLength} (C{--max-associate-length}) below it, the
    same request is aborted from its header (2, 6) and the log says which
    cap; a default request still gets through.
    """
    with runningServer(maxAssociateLength=65536) as server:
        mark = server.mark()
        status, output = runEchoscu(echoscu, server.port(), "-ppc", "128", "-pts", "38")
        assert status != 0, output
        server.waitForEvents(
            lambda events: any(
                e.name == "association-summary"
                and "above the cap of 65536" in str(e.fields.get("reason"))
                for e in events[mark:]
            ),
            "the summary of the request above the cap",
        )
        status, output = runEchoscu(echoscu, server.port())
        assert status == 0, output
