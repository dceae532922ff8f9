# -*- test-case-name: tests.test_webresources -*-
"""
The live page as C{twisted.web} resources (C{--web ENDPOINT}, or
L{liveResource} in a C{.tac} next to other resources):

- C{/}: the recent connections, newest first, with counters, the chart
  and a filter (C{?outcome=&ae=&address=}), rendered on the server;
- C{/associations/N}: one connection's details;
- C{/api/associations}: the same records as JSON, same filter;
- C{/events}: server-sent events, one per new record (what C{live.js}
  listens to), same filter;
- C{/chart.svg}, C{/static/...}: the chart and the page's own assets.

Only GET (and HEAD); every response forbids framing, sniffing and any
script or style not from this server (Content-Security-Policy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.util import redirectTo
from zope.interface import implementer

from dicomecho.observability.history import AssociationHistory, AssociationRecord
from dicomecho.web.chart import chartSVG
from dicomecho.web.records import recordJSON
from dicomecho.web.render import RecordFilter, countersHTML, detailsHTML, pageHTML, rowHTML

__all__ = ["CONTENT_SECURITY_POLICY", "liveResource", "MAX_EVENT_STREAMS"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: Live streams served at once; more get 503.
MAX_EVENT_STREAMS = 32
#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE_INTERVAL = 15.0

_STATIC = Path(__file__).parent / "static"
_ASSETS = {
    b"page.css": ("page.css", b"text/css; charset=utf-8"),
    b"live.js": ("live.js", b"text/javascript; charset=utf-8"),
    b"icon.svg": ("icon.svg", b"image/svg+xml"),
}


def _headers(request: Request, contentType: bytes) -> None:
    request.setHeader(b"content-type", contentType)
    request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY.encode())
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"cache-control", b"no-store")


def _document(title: str, body: str, base: str) -> bytes:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title>"
        f'<link rel="icon" href="{base}static/icon.svg" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{base}static/page.css">'
        f'<script src="{base}static/live.js" defer></script>'
        f"</head><body>{body}</body></html>"
    ).encode()


class _Server:
    """What the resources read: the history, the live count, the clock."""

    def __init__(
        self, history: AssociationHistory, active: Callable[[], int], clock: IReactorTime, title: str
    ) -> None:
        self.history = history
        self.active = active
        self.clock = clock
        self.title = title
        self.streams = 0

    def counters(self) -> str:
        return countersHTML(self.history.counts, self.active())

    def chart(self) -> str:
        return chartSVG(self.history.perMinute(self.clock.seconds()))


class _Directory(Resource):
    """
    A resource of named children; any other name is not found. Asked for
    without its trailing slash (C{/live}), it redirects to it, as relative
    links need.
    """

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()

    def render_GET(self, request: Request) -> bytes:
        query = request.uri.partition(b"?")[2]
        return redirectTo(request.path + b"/" + (b"?" + query if query else b""), request)


class _Live(Resource):
    """A resource of the live page: it reads the server's state."""

    def __init__(self, server: _Server) -> None:
        super().__init__()
        self.live = server


class _Leaf(_Live):
    isLeaf = True


class _Page(_Live):
    def render_GET(self, request: Request) -> bytes:
        server = self.live
        selected = RecordFilter.fromQuery(request.args)
        body = pageHTML(
            server.history.newestFirst(), selected, server.counters(), server.chart(), server.title
        )
        _headers(request, b"text/html; charset=utf-8")
        return _document(server.title, body, "")


class _Details(_Live):
    def getChild(self, path: bytes, request: Request) -> IResource:
        record = self.live.history.find(int(path)) if path.isdigit() and len(path) < 12 else None
        if record is None:
            return notFound(
                "No such connection", "The history keeps the most recent connections only."
            )
        return _OneRecord(self.live, record)


class _OneRecord(_Leaf):
    def __init__(self, server: _Server, record: AssociationRecord) -> None:
        super().__init__(server)
        self.record = record

    def render_GET(self, request: Request) -> bytes:
        _headers(request, b"text/html; charset=utf-8")
        body = '<p><a href="../">\u2190 all connections</a></p>' + detailsHTML(self.record)
        return _document(f"#{self.record.number} \u00b7 {self.live.title}", body, "../")


class _API(_Leaf):
    def render_GET(self, request: Request) -> bytes:
        selected = RecordFilter.fromQuery(request.args)
        records = [recordJSON(r) for r in self.live.history.newestFirst() if selected.admits(r)]
        _headers(request, b"application/json")
        return json.dumps({"associations": records}, indent=1).encode()


class _Chart(_Leaf):
    def render_GET(self, request: Request) -> bytes:
        _headers(request, b"image/svg+xml")
        return self.live.chart().encode()


class _Asset(Resource):
    isLeaf = True

    def __init__(self, data: bytes, contentType: bytes) -> None:
        super().__init__()
        self.data, self.contentType = data, contentType

    def render_GET(self, request: Request) -> bytes:
        _headers(request, self.contentType)
        request.setHeader(b"cache-control", b"max-age=300")
        return self.data


@implementer(IPushProducer)
class _Stream:
    """
    One page's server-sent events: one C{association} event per new record
    the filter admits (its row), one C{counters} event per record, and a
    comment every L{KEEPALIVE_INTERVAL} seconds so a dead client is noticed.
    A page that stops reading (its send buffer fills: Twisted pauses this
    producer) is cut off, so it costs no memory; its EventSource reconnects
    and the script reloads the page.
    """

    def __init__(self, server: _Server, request: Request, selected: RecordFilter) -> None:
        self.live, self.request, self.selected = server, request, selected
        server.streams += 1
        request.registerProducer(self, True)
        request.write(b"retry: 2000\n\n")
        self.stopListening = server.history.listen(self.heard)
        self.keepalive = server.clock.callLater(KEEPALIVE_INTERVAL, self.tick)
        request.notifyFinish().addBoth(self.finished)

    def send(self, event: bytes, data: dict[str, Any]) -> None:
        self.request.write(b"event: " + event + b"\ndata: " + json.dumps(data).encode() + b"\n\n")

    def heard(self, record: AssociationRecord) -> None:
        if self.selected.admits(record):
            self.send(b"association", {"number": record.number, "row": rowHTML(record)})
        self.send(b"counters", {"counters": self.live.counters()})

    def tick(self) -> None:
        self.request.write(b": keepalive\n\n")
        self.keepalive = self.live.clock.callLater(KEEPALIVE_INTERVAL, self.tick)

    def pauseProducing(self) -> None:
        self.request.channel.transport.abortConnection()

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass

    def finished(self, _: object) -> None:
        self.live.streams -= 1
        self.stopListening()
        if self.keepalive.active():
            self.keepalive.cancel()


class _Events(_Leaf):
    """The server-sent events of the page (L{_Stream}), at most L{MAX_EVENT_STREAMS}."""

    def render_GET(self, request: Request) -> bytes | int:
        if self.live.streams >= MAX_EVENT_STREAMS:
            request.setResponseCode(503)
            _headers(request, b"text/plain; charset=utf-8")
            return b"Too many live pages open; reload later.\n"
        _headers(request, b"text/event-stream")
        _Stream(self.live, request, RecordFilter.fromQuery(request.args))
        return NOT_DONE_YET


def liveResource(
    history: AssociationHistory,
    active: Callable[[], int],
    clock: IReactorTime | None = None,
    title: str = "dicomecho",
) -> Resource:
    """
    The live page's resource tree, to serve at any path (a C{.tac} can put
    it next to other resources).

    @param active: how many associations are established now.
    """
    if clock is None:
        from twisted.internet import reactor

        clock = reactor  # type: ignore[assignment]
    server = _Server(history, active, clock, title)  # type: ignore[arg-type]
    root = _Directory()
    page = _Page(server)
    root.putChild(b"", page)
    root.putChild(b"associations", _Details(server))
    api = _Directory()
    api.putChild(b"associations", _API(server))
    root.putChild(b"api", api)
    root.putChild(b"events", _Events(server))
    root.putChild(b"chart.svg", _Chart(server))
    static = _Directory()
    for name, (filename, contentType) in _ASSETS.items():
        static.putChild(name, _Asset((_STATIC / filename).read_bytes(), contentType))
    root.putChild(b"static", static)
    root.putChild(b"favicon.ico", _Asset((_STATIC / "icon.svg").read_bytes(), b"image/svg+xml"))
    return root
