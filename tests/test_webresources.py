"""
Tests for the live page's resources (L{dicomecho.web.resources},
L{dicomecho.web.site}): real HTTP requests parsed by C{twisted.web} on
in-memory transports, against a factory whose connections ran on in-memory
transports too (the browser tests are in tests/test_web_browser.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.web.server import Site

from dicomecho.association.negotiation import AssociationPolicy
from dicomecho.observability.history import AssociationHistory
from dicomecho.security.sourcelimits import SourceLimitsPolicy
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.web.resources import CONTENT_SECURITY_POLICY, MAX_EVENT_STREAMS, liveResource
from dicomecho.web.site import liveSite
from dicomecho.wire.pdu import AssociateRQ, ReleaseRQ
from dicomecho.wire.userinfo import UserInformation
from tests.support.harness import Harness, echo, rq

HOSTILE = "<svg/onload=f()>"  # 16 characters: an AE title's limit


class Response:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}

    @property
    def text(self) -> str:
        return self.body.decode()


def send(site: Site, path: str, method: str = "GET", headers: str = "") -> StringTransport:
    """One HTTP/1.0 request, on a memory transport."""
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(f"{method} {path} HTTP/1.0\r\nHost: x\r\n{headers}\r\n".encode())
    transport.protocol = protocol  # type: ignore[attr-defined]
    return transport


def request(site: Site, path: str, method: str = "GET", headers: str = "") -> tuple[Response, StringTransport]:
    """One HTTP/1.0 request, answered (or still streaming)."""
    transport = send(site, path, method, headers)
    return Response(transport.value()), transport


def served(**factoryArguments: Any) -> tuple[DICOMServerFactory, Clock, Site]:
    clock = Clock()
    clock.advance(1_800_000_000)
    factory = DICOMServerFactory(clock=clock, history=AssociationHistory(50), **factoryArguments)
    site = Site(liveResource(factory.history, lambda: factory.activeAssociations, clock, "test"))  # type: ignore[arg-type]
    return factory, clock, site


def associate(factory: DICOMServerFactory, clock: Clock, request: AssociateRQ, port: int = 40000, echoes: int = 1) -> None:
    harness = Harness(factory, clock, IPv4Address("TCP", "192.0.2.10", port))
    harness.send(request)
    for n in range(echoes):
        harness.send(echo(n + 1))
    harness.send(ReleaseRQ())
    clock.advance(0.01)
    harness.close()


def test_pageListsConnectionsNewestFirst() -> None:
    factory, clock, site = served()
    associate(factory, clock, rq(), 40001)
    associate(factory, clock, AssociateRQ("WRONG", "SCU2", presentationContexts=rq().presentationContexts), 40002)
    response, _ = request(site, "/")
    assert response.status == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    page = response.text
    assert page.index("192.0.2.10:40002") < page.index("192.0.2.10:40001")
    assert "SCU \u2192 ECHOSCP" in page and "released" in page
    assert '<span class="count" data-counter="accepted">2</span>' in page
    assert "<svg" in page  # the chart, inline


def test_rejectionShowsItsHint() -> None:
    factory, clock, site = served(requireCalledAETitle=True)
    associate(factory, clock, AssociateRQ("PACS1", "MODALITY", presentationContexts=rq().presentationContexts))
    page = request(site, "/")[0].text
    assert 'class="association rejected"' in page
    record = next(factory.history.newestFirst())  # type: ignore[union-attr]
    assert record.hint and "PACS1" in record.hint and "ECHOSCP" in record.hint
    assert record.hint.replace("'", "&#x27;") in page


def test_peerStringsAreEscaped() -> None:
    factory, clock, site = served()
    info = UserInformation(maximumLength=16384, implementationClassUID="1.2.3", implementationVersionName=HOSTILE)
    associate(factory, clock, AssociateRQ("ECHOSCP", HOSTILE, presentationContexts=rq().presentationContexts, userInformation=info))
    for path in ("/", "/associations/1"):
        page = request(site, path)[0].text
        assert "&lt;svg/onload=f()&gt;" in page
        assert HOSTILE not in page
    data = json.loads(request(site, "/api/associations")[0].body)
    assert data["associations"][0]["callingAETitle"] == HOSTILE  # JSON carries it as data


def test_detailsPage() -> None:
    factory, clock, site = served()
    associate(factory, clock, rq(), echoes=3)
    response, _ = request(site, "/associations/1")
    assert response.status == 200
    page = response.text
    for text in ("INCOMING A-ASSOCIATE-RQ PDU", "Calling Application Name", "Accepted Transfer Syntax",
                 "Echoes answered", "<th scope=\"row\">Implementation class UID</th><td>1.2.3</td>"):
        assert text in page, text
    assert request(site, "/associations/2")[0].status == 404
    assert request(site, "/associations/x")[0].status == 404


def test_apiAndFilters() -> None:
    factory, clock, site = served(allowedCallingAETitles=["SCU"])
    associate(factory, clock, rq(), 40001)
    associate(factory, clock, AssociateRQ("ECHOSCP", "OTHER", presentationContexts=rq().presentationContexts), 40002)
    everything = json.loads(request(site, "/api/associations")[0].body)["associations"]
    assert [a["callingAETitle"] for a in everything] == ["OTHER", "SCU"]
    first = everything[1]
    assert first["contexts"] == [{
        "id": 1, "abstractSyntax": "1.2.840.10008.1.1", "proposedTransferSyntaxes": ["1.2.840.10008.1.2"],
        "result": 0, "transferSyntax": "1.2.840.10008.1.2",
    }]
    assert first["outcome"] == "released" and first["messages"] == 1 and first["hint"] is None
    rejected = json.loads(request(site, "/api/associations?outcome=rejected")[0].body)["associations"]
    assert [a["callingAETitle"] for a in rejected] == ["OTHER"] and rejected[0]["rejection"] == [1, 1, 3]
    byTitle = json.loads(request(site, "/api/associations?ae=oth")[0].body)["associations"]
    assert [a["callingAETitle"] for a in byTitle] == ["OTHER"]
    byAddress = json.loads(request(site, "/api/associations?address=:40001")[0].body)["associations"]
    assert [a["callingAETitle"] for a in byAddress] == ["SCU"]
    page = request(site, "/?outcome=rejected")[0].text
    assert "OTHER" in page and "SCU \u2192" not in page
    assert '<option value="rejected" selected>' in page


def test_onlyGet() -> None:
    _, _, site = served()
    response, _ = request(site, "/", method="POST")
    assert response.status == 405


def test_liveEvents() -> None:
    """
    A stream gets each new record's row (if its filter admits it) and the
    counters; a keep-alive comment while idle; closing it stops both.
    """
    factory, clock, site = served(requireCalledAETitle=True)
    response, transport = request(site, "/events?outcome=accepted")
    assert response.status == 200 and response.headers["content-type"] == "text/event-stream"
    associate(factory, clock, rq())
    associate(factory, clock, AssociateRQ("NOT-US", "SCU", presentationContexts=rq().presentationContexts))
    stream = transport.value().decode()
    assert stream.count("event: association\n") == 1  # the rejected one is filtered out
    payload = json.loads(stream.split("event: association\ndata: ")[1].split("\n")[0])
    assert payload["number"] == 1 and 'id="a1"' in payload["row"]
    assert stream.count("event: counters\n") == 2
    clock.advance(15)
    assert transport.value().decode().endswith(": keepalive\n\n")
    transport.loseConnection()
    transport.protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
    before = transport.value()
    associate(factory, clock, rq())
    clock.advance(30)
    assert transport.value() == before
    assert clock.getDelayedCalls() == [] or all(not c.active() for c in clock.getDelayedCalls())


def test_streamsAreBounded() -> None:
    _, _, site = served()
    streams = [request(site, "/events") for _ in range(MAX_EVENT_STREAMS)]
    assert all(r.status == 200 for r, _ in streams)
    assert request(site, "/events")[0].status == 503


def test_assets() -> None:
    _, _, site = served()
    for path, kind in (("/static/page.css", "text/css"), ("/static/live.js", "text/javascript"),
                       ("/static/icon.svg", "image/svg+xml"), ("/chart.svg", "image/svg+xml")):
        response, _ = request(site, path)
        assert response.status == 200 and response.headers["content-type"].startswith(kind), path
        assert response.body
    assert request(site, "/static/")[0].status == 404
    assert request(site, "/static/../setup.cfg")[0].status == 404


class Store:
    def __init__(self) -> None:
        self.calls = 0

    def verify(self, username: bytes, passcode: bytes | None) -> bool:
        self.calls += 1
        return (username, passcode) == (b"admin", b"s3cret")


def test_credentials() -> None:
    """
    With a credentials store the page asks for HTTP Basic credentials; a
    passing pair is remembered a while (scrypt is slow), a wrong one is not.
    """
    factory, clock, _ = served()
    store = Store()

    site = liveSite(factory, store, clock, runInThread=lambda f, *a: succeed(f(*a)))
    assert request(site, "/")[0].status == 401
    good = "Authorization: Basic YWRtaW46czNjcmV0\r\n"  # admin:s3cret
    bad = "Authorization: Basic YWRtaW46d3Jvbmc=\r\n"  # admin:wrong
    assert request(site, "/", headers=bad)[0].status == 401
    assert request(site, "/", headers=good)[0].status == 200
    assert request(site, "/api/associations", headers=good)[0].status == 200
    assert store.calls == 2
    clock.advance(301)
    assert request(site, "/", headers=good)[0].status == 200
    assert store.calls == 3


def test_aPageThatStopsReadingIsCutOff() -> None:
    """
    A live stream is its transport's producer: when the page stops reading
    (Twisted pauses the producer), the stream is cut, and forgotten.
    """
    factory, clock, site = served()
    _, transport = request(site, "/events")
    producer = transport.producer
    assert producer is not None and transport.streaming
    producer.pauseProducing()
    assert transport.disconnecting
    transport.protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
    associate(factory, clock, rq())  # nothing is written to it any more
    # Its slot is free again: a full set of streams can open.
    assert all(request(site, "/events")[0].status == 200 for _ in range(MAX_EVENT_STREAMS))


def test_checksInFlightAreBounded() -> None:
    """
    Guesses beyond the passcode checks already running are refused at once:
    a flood queues no scrypt work.
    """
    from twisted.internet.defer import Deferred

    from dicomecho.web.site import MAX_CHECKS_IN_FLIGHT

    factory, clock, _ = served()
    pending: list[Deferred[bool]] = []

    def later(f: Any, *a: Any) -> Deferred[bool]:
        pending.append(Deferred())
        return pending[-1]

    site = liveSite(factory, Store(), clock, runInThread=later)
    good = "Authorization: Basic YWRtaW46czNjcmV0\r\n"
    waiting = [send(site, "/", headers=good) for _ in range(MAX_CHECKS_IN_FLIGHT)]
    assert len(pending) == MAX_CHECKS_IN_FLIGHT and not any(t.value() for t in waiting)
    assert request(site, "/", headers=good)[0].status == 401  # refused at once
    assert len(pending) == MAX_CHECKS_IN_FLIGHT
    pending[0].callback(True)
    assert Response(waiting[0].value()).status == 200
    assert request(site, "/", headers=good)[0].status == 200  # remembered now


def test_directoryWithoutItsSlash() -> None:
    """A tree mounted at /live answers /live with a redirect to /live/."""
    from twisted.web.resource import Resource

    _, clock, site = served()
    root = Resource()
    root.putChild(b"live", site.resource)
    mounted = Site(root)
    response, _ = request(mounted, "/live?ae=CT")
    assert response.status == 302 and response.headers["location"] == "/live/?ae=CT"
    assert request(mounted, "/live/")[0].status == 200
