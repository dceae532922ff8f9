"""
Tests for the live page's pure renderers: L{dicomecho.web.render} (rows,
details, filter), L{dicomecho.web.chart} (the SVG) and
L{dicomecho.web.records} (JSON).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from dicomecho.association.negotiation import AssociationPolicy, negotiate
from dicomecho.association.outcome import Outcome
from dicomecho.observability.history import AssociationHistory, AssociationRecord, Category
from dicomecho.web.chart import chartSVG
from dicomecho.web.records import recordJSON
from dicomecho.web.render import RecordFilter, detailRows, productText, rowHTML
from dicomecho.wire.pdu import AssociateRQ
from dicomecho.wire.userinfo import UserInformation
from tests.support.harness import rq


def record(calling: str = "SCU", version: str | None = None, uid: str = "1.2.3", **fields: object) -> AssociationRecord:
    info = UserInformation(maximumLength=16384, implementationClassUID=uid, implementationVersionName=version)
    request = AssociateRQ("ECHOSCP", calling, presentationContexts=rq().presentationContexts, userInformation=info)
    fields.setdefault("outcome", Outcome.RELEASED)
    fields.setdefault("reason", "A-RELEASE completed")
    return AssociationRecord(  # type: ignore[arg-type]
        startedAt=1_800_000_000.0, peer="192.0.2.1:4000",
        callingAETitle=calling, calledAETitle="ECHOSCP",
        answer=negotiate(request, AssociationPolicy()), number=7, **fields,
    )


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def tagsOf(html: str) -> list[str]:
    parser = Elements()
    parser.feed(html)
    return parser.tags


def test_productNamedFromTheRequest() -> None:
    assert productText(record(uid="1.2.276.0.7230010.3.0.3.6.7", version="OFFIS_DCMTK_367")) == "DCMTK 3.6.7"
    assert productText(record(uid="1.2.3.4", version="MYTOOL_1")) == "MYTOOL_1"
    assert productText(record(uid="1.2.3.4")) == ""


def test_row() -> None:
    html = rowHTML(record(hint=None))
    assert html.startswith('<tr class="association accepted" id="a7" data-href="associations/7">')
    assert "SCU \u2192 ECHOSCP" in html and "1 of 1 accepted" in html and ">released<" in html


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=16), st.text(max_size=16), st.text(max_size=200))
def test_peerStringsNeverBecomeMarkup(calling: str, version: str, reason: str) -> None:
    """Whatever a peer sends, a row and the details have only our own tags."""
    row = rowHTML(record(calling=calling, version=version or None, reason=reason, hint=reason))
    assert set(tagsOf(row)) <= {"tr", "td", "a", "time"}
    assert tagsOf(row).count("tr") == 1


def test_filter() -> None:
    selected = RecordFilter.fromQuery({b"outcome": [b"rejected"], b"ae": [b" pac "], b"address": [b"192.0.2"]})
    assert selected == RecordFilter(Category.REJECTED, "pac", "192.0.2")
    assert selected.query() == "outcome=rejected&ae=pac&address=192.0.2"
    assert not selected.admits(record(calling="PACS1"))
    assert selected.admits(record(calling="PACS1", outcome=Outcome.REJECTED))
    assert not selected.admits(record(calling="CT", outcome=Outcome.REJECTED))
    assert RecordFilter.fromQuery({b"outcome": [b"bogus"]}) == RecordFilter()
    assert RecordFilter().admits(record())


def test_detailRows() -> None:
    rows = detailRows(record())
    assert ("section", "INCOMING A-ASSOCIATE-RQ PDU", "") in rows
    assert ("field", "Calling Application Name", "SCU") in rows
    assert ("section", "OUTGOING A-ASSOCIATE-AC PDU", "") in rows
    assert ("field", "", "Implicit VR Little Endian") in rows


def test_detailRowsOfAnAbort() -> None:
    aborted = AssociationRecord(0.0, "p", Outcome.ABORTED_BY_PEER, "r", abort=(0, None), abortedByPeer=True)
    assert detailRows(aborted) == []  # a closed transport has no A-ABORT block
    aborted.abort = (2, 1)
    assert ("section", "INCOMING A-ABORT PDU", "") in detailRows(aborted)


def test_chart() -> None:
    history = AssociationHistory()
    for n in range(7):
        history.add(AssociationRecord(1_800_000_000.0 + n, "p", Outcome.RELEASED, "r"))
    history.add(AssociationRecord(1_800_000_000.0, "p", Outcome.REJECTED, "r"))
    svg = chartSVG(history.perMinute(1_800_000_030.0))
    root = ElementTree.fromstring(svg)  # well-formed XML
    namespace = "{http://www.w3.org/2000/svg}"
    rects = root.findall(f".//{namespace}rect")
    assert [r.get("class") for r in rects] == ["accepted", "rejected"]
    assert float(rects[0].get("height")) == 7 * float(rects[1].get("height"))  # type: ignore[arg-type]
    assert re.search(r">10</text>", svg)  # the axis top: a round number above the peak
    assert ElementTree.fromstring(chartSVG(AssociationHistory().perMinute(0.0))) is not None


def test_recordJSON() -> None:
    data = recordJSON(record(uid="1.2.826.0.1.3680043.9.3811.3.0.4", version="PYNETDICOM_304"))
    assert data["product"] == "pynetdicom 3.0.4"
    assert data["time"] == "2027-01-15T08:00:00Z"
    assert data["contexts"][0]["result"] == 0 and data["category"] == "accepted"
    assert data["rejection"] is None and data["hint"] is None
