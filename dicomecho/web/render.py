# -*- test-case-name: tests.test_webrender -*-
"""
The live page's HTML, rendered on the server: the list of recent
connections, one connection's details, the counters. Pure: records in,
text out. Every string from a peer goes through L{html.escape}; the page
works without JavaScript (C{live.js} only adds rows as they come).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from typing import Iterable, Mapping
from urllib.parse import urlencode

from dicomecho.association.negotiation import Acceptance
from dicomecho.observability.history import AssociationRecord, Category
from dicomecho.observability.logblocks import (
    abortLines,
    associateACLines,
    associateRJLines,
    associateRQLines,
)
from dicomecho.observability.products import recognizeProduct

__all__ = ["RecordFilter", "detailRows", "productText", "rowHTML", "countersHTML", "pageHTML"]

#: The columns of the list, in order.
_COLUMNS = (
    "Time", "Peer", "Calling \u2192 called", "SCU", "TLS / user", "Contexts", "Outcome",
    "Duration", "Echoes", "What to change",
)


@dataclass(frozen=True)
class RecordFilter:
    """
    Which records to show: by outcome category, AE title (calling or called,
    any case, part of it) and address (part of C{host:port}).
    """

    category: Category | None = None
    aeTitle: str = ""
    address: str = ""

    @classmethod
    def fromQuery(cls, args: Mapping[bytes, list[bytes]]) -> RecordFilter:
        def first(name: bytes) -> str:
            values = args.get(name) or [b""]
            return values[0].decode("utf-8", "replace").strip()[:64]

        known = {c.value: c for c in Category}
        return cls(known.get(first(b"outcome")), first(b"ae"), first(b"address"))

    def admits(self, record: AssociationRecord) -> bool:
        if self.category is not None and record.category is not self.category:
            return False
        if self.aeTitle:
            wanted = self.aeTitle.upper()
            titles = (record.callingAETitle or "", record.calledAETitle or "")
            if not any(wanted in t.upper() for t in titles):
                return False
        return not self.address or self.address in record.peer

    def query(self) -> str:
        """The filter as a query string (without C{?}), for links."""
        parts = [("outcome", self.category.value if self.category else ""),
                 ("ae", self.aeTitle), ("address", self.address)]
        return urlencode([(k, v) for k, v in parts if v])


def productText(record: AssociationRecord) -> str:
    """The SCU's product and version, or its version name, or C{""}."""
    uid, version = record.implementation
    product = recognizeProduct(uid, version)
    if product is not None:
        return f"{product.name} {product.version}" if product.version else product.name
    return (version or "").strip()


def _clock(at: float) -> tuple[str, str]:
    local = time.localtime(at)
    return time.strftime("%H:%M:%S", local), time.strftime("%Y-%m-%d %H:%M:%S %z", local)


def _contextsText(record: AssociationRecord) -> str:
    answer = record.answer
    if isinstance(answer, Acceptance):
        results = [pc.result for pc in answer.ac.presentationContexts]
        return f"{results.count(0)} of {len(results)} accepted"
    if record.request is not None:
        return f"{len(record.request.presentationContexts)} proposed"
    return ""


def _tlsUserText(record: AssociationRecord) -> str:
    parts = [record.tls.get("tlsVersion") or "", record.tls.get("tlsSubject") or ""]
    if record.user:
        parts.append(f"user {record.user}")
    return " \u00b7 ".join(p for p in parts if p)


def rowHTML(record: AssociationRecord) -> str:
    """One row of the list; its outcome category is its class."""
    short, full = _clock(record.startedAt)
    titles = ""
    if record.callingAETitle is not None:
        titles = f"{record.callingAETitle.strip()} \u2192 {(record.calledAETitle or '').strip()}"
    outcome = record.outcome.value
    if record.connections > 1:
        outcome += f" \u00d7{record.connections}"
    cells = (
        f'<td class="time"><time title="{escape(full)}">{escape(short)}</time></td>',
        f'<td class="peer">{escape(record.peer)}</td>',
        f'<td class="titles">{escape(titles)}</td>',
        f'<td class="product">{escape(productText(record))}</td>',
        f'<td class="tls">{escape(_tlsUserText(record))}</td>',
        f'<td class="contexts">{escape(_contextsText(record))}</td>',
        f'<td class="outcome" title="{escape(record.reason)}">{escape(outcome)}</td>',
        f'<td class="duration">{record.durationSeconds * 1000:.1f} ms</td>',
        f'<td class="echoes">{record.messages}</td>',
        f'<td class="hint">{escape(record.hint or "")}</td>',
    )
    return (
        f'<tr class="association {record.category.value}" id="a{record.number}" '
        f'data-href="associations/{record.number}">'
        f'<td class="number"><a href="associations/{record.number}">#{record.number}</a></td>'
        + "".join(cells) + "</tr>"
    )


def countersHTML(counts: Mapping[Category, int], active: int) -> str:
    """The counters at a glance."""
    items = [(c.value, counts.get(c, 0)) for c in Category] + [("active now", active)]
    return "".join(
        f'<li class="counter {escape(name).replace(" ", "-")}"><span class="count" '
        f'data-counter="{escape(name)}">{count}</span> {escape(name)}</li>'
        for name, count in items
    )


def detailRows(record: AssociationRecord) -> list[tuple[str, str, str]]:
    """
    The C{-d} blocks of a connection as table rows (kind, label, value):
    kind C{"section"} for a banner, C{"field"} otherwise.
    """
    rows: list[tuple[str, str, str]] = []
    for line in _detailLines(record):
        text = line.strip()
        if text.startswith("=") and text.endswith("=") and len(text) > 20:
            rows.append(("section", text.strip("= "), ""))
        elif text.startswith("="):
            rows.append(("field", "", text[1:]))
        elif ":" in text:
            label, _, value = text.partition(":")
            rows.append(("field", label.strip(), value.strip()))
        else:
            rows.append(("field", "", text))
    return rows


def _detailLines(record: AssociationRecord) -> list[str]:
    lines = list(record.detailLines)
    rq, answer = record.request, record.answer
    if rq is not None:
        lines += associateRQLines(rq)
    if isinstance(answer, Acceptance):
        lines += associateACLines(rq, answer.ac)
    elif record.rejection is not None:
        lines += associateRJLines(*record.rejection)
    if record.abort is not None:
        direction = "INCOMING" if record.abortedByPeer else "OUTGOING"
        if record.abort[1] is not None or not record.abortedByPeer:
            lines += abortLines(direction, *record.abort)
    return lines


def _summaryRows(record: AssociationRecord) -> Iterable[tuple[str, str]]:
    uid, version = record.implementation
    yield "Connected", _clock(record.startedAt)[1]
    yield "Peer", record.peer
    yield "Calling AE title", record.callingAETitle or ""
    yield "Called AE title", record.calledAETitle or ""
    yield "SCU", productText(record)
    yield "Implementation class UID", uid or ""
    yield "Implementation version name", version or ""
    for key, value in sorted(record.tls.items()):
        if value:
            yield f"TLS {key}", value
    yield "User", record.user or ""
    yield "Outcome", record.outcome.value
    yield "Reason", record.reason
    yield "Duration", f"{record.durationSeconds:.3f} s"
    yield "Echoes answered", str(record.messages)


def detailsHTML(record: AssociationRecord) -> str:
    """The body of one connection's page."""
    summary = "".join(
        f"<tr><th scope=\"row\">{escape(k)}</th><td>{escape(v)}</td></tr>"
        for k, v in _summaryRows(record) if v
    )
    blocks = []
    for kind, label, value in detailRows(record):
        if kind == "section":
            blocks.append(f'<tr class="section"><th colspan="2">{escape(label)}</th></tr>')
        else:
            blocks.append(f"<tr><th scope=\"row\">{escape(label)}</th><td>{escape(value)}</td></tr>")
    hint = f'<p class="hint">{escape(record.hint)}</p>' if record.hint else ""
    return (
        f'<h2>Connection #{record.number} <span class="outcome {record.category.value}">'
        f"{escape(record.outcome.value)}</span></h2>{hint}"
        f'<table class="summary">{summary}</table>'
        f'<table class="blocks">{"".join(blocks)}</table>'
    )


def _filterForm(selected: RecordFilter) -> str:
    options = ['<option value="">any outcome</option>'] + [
        f'<option value="{c.value}"{" selected" if selected.category is c else ""}>'
        f"{c.value}</option>"
        for c in Category
    ]
    return (
        '<form class="filter" method="get" action="">'
        f'<label>Outcome <select name="outcome">{"".join(options)}</select></label>'
        f'<label>AE title <input name="ae" value="{escape(selected.aeTitle)}" maxlength="64"></label>'
        f'<label>Address <input name="address" value="{escape(selected.address)}" maxlength="64"></label>'
        '<button type="submit">Filter</button></form>'
    )


def pageHTML(
    records: Iterable[AssociationRecord],
    selected: RecordFilter,
    counters: str,
    chart: str,
    title: str,
) -> str:
    """The body of the list page."""
    rows = "".join(rowHTML(r) for r in records if selected.admits(r))
    header = "".join(f"<th scope=\"col\">{escape(c)}</th>" for c in ("#",) + _COLUMNS)
    query = selected.query()
    return (
        f'<h1>{escape(title)}</h1><ul class="counters" id="counters">{counters}</ul>'
        f'<figure class="chart">{chart}<figcaption>Connections per minute, last hour'
        "</figcaption></figure>"
        f"{_filterForm(selected)}"
        '<p class="live" id="live" data-state="static">Reload for new connections.</p>'
        f'<div class="scroll"><table class="associations" id="associations" data-events="events'
        f'{escape("?" + query) if query else ""}"><thead><tr>{header}</tr></thead>'
        f'<tbody id="rows">{rows}</tbody></table></div>'
        + ("" if rows else '<p class="empty" id="empty">No connection yet. Press Verify on the SCU.</p>')
    )
