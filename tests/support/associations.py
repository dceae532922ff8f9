"""
What the whole-association real-peer tests share: module-wide
L{FactoryServer} fixtures with the configurations they compare
(C{defaultServer}, C{preferLittleServer}, C{implicitOnlyServer},
C{calledAEServer}, C{callingAEServer}), the C{echoscu} and C{pynetdicom}
fixtures, a pynetdicom AE with bounded timers (L{pynetdicomAE}),
L{associate}, L{echoAndRelease}, L{rejection}, and the server events of a
plain echo (L{ECHOED}).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence

import pytest

from tests.support.peers import closePynetdicomRejectRace, requireEchoscu, requirePynetdicom
from tests.support.processes import Event, FactoryServer, runningServer

__all__ = [
    "VERIFICATION",
    "CT_IMAGE_STORAGE",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "PYNETDICOM_TIMEOUT",
    "ECHOED",
    "defaultServer",
    "preferLittleServer",
    "implicitOnlyServer",
    "calledAEServer",
    "callingAEServer",
    "echoscu",
    "pynetdicom",
    "names",
    "pynetdicomAE",
    "associate",
    "echoAndRelease",
    "rejection",
]

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

#: pynetdicom's ACSE, network, DIMSE and connection timeouts.
PYNETDICOM_TIMEOUT = 10


@pytest.fixture(scope="module")
def defaultServer() -> Iterator[FactoryServer]:
    """
    One server with the default configuration, shared by the module.
    """
    with runningServer() as server:
        yield server


@pytest.fixture(scope="module")
def preferLittleServer() -> Iterator[FactoryServer]:
    """
    A server preferring Explicit VR Little Endian (echoscp C{-xe}).
    """
    with runningServer(transferSyntaxes="PREFER_LITTLE") as server:
        yield server


@pytest.fixture(scope="module")
def implicitOnlyServer() -> Iterator[FactoryServer]:
    """
    A server accepting Implicit VR Little Endian only (echoscp C{-xi}).
    """
    with runningServer(transferSyntaxes="IMPLICIT_ONLY") as server:
        yield server


@pytest.fixture(scope="module")
def calledAEServer() -> Iterator[FactoryServer]:
    """
    A server that rejects requests not addressed to ECHOSCP.
    """
    with runningServer(aeTitle="ECHOSCP", requireCalledAETitle=True) as server:
        yield server


@pytest.fixture(scope="module")
def callingAEServer() -> Iterator[FactoryServer]:
    """
    A server that accepts the calling AE title GOOD only.
    """
    with runningServer(allowedCallingAETitles=["GOOD"]) as server:
        yield server


@pytest.fixture
def echoscu() -> str:
    """
    The path of DCMTK's echoscu.
    """
    return requireEchoscu()


@pytest.fixture
def pynetdicom(caplog, monkeypatch):
    """
    pynetdicom, with its logger limited to errors (pytest shows the records
    only if the test fails) and with its reject race closed
    (L{closePynetdicomRejectRace}).
    """
    module = requirePynetdicom()
    caplog.set_level(logging.ERROR, logger="pynetdicom")
    closePynetdicomRejectRace(monkeypatch)
    return module


def names(events: Sequence[Event]) -> list[str]:
    return [e.name for e in events]


#: The server's events for an association that echoes once and releases.
ECHOED = [
    "associate-rq",
    "association-accepted",
    "dimse-received",
    "association-released",
]


def pynetdicomAE(
    pynetdicom, *contexts: tuple[str, Sequence[str] | None], title: str = "PYSCU"
):
    """
    A pynetdicom AE requesting C{contexts} (abstract syntax, transfer
    syntaxes or C{None} for pynetdicom's default four), with 10 s bounds.
    """
    ae = pynetdicom.AE(ae_title=title)
    ae.acse_timeout = PYNETDICOM_TIMEOUT
    ae.network_timeout = PYNETDICOM_TIMEOUT
    ae.dimse_timeout = PYNETDICOM_TIMEOUT
    ae.connection_timeout = PYNETDICOM_TIMEOUT
    for abstractSyntax, transferSyntaxes in contexts or [(VERIFICATION, None)]:
        if transferSyntaxes is None:
            ae.add_requested_context(abstractSyntax)
        else:
            ae.add_requested_context(abstractSyntax, list(transferSyntaxes))
    return ae


def associate(ae, port: int, *, called: str = "ECHOSCP", **kwargs: Any):
    """
    C{ae.associate()} to 127.0.0.1, also returning the C{host:port} the
    server sees for this association (its C{peer} field).
    """
    from pynetdicom import evt

    local: list[tuple[str, int]] = []

    def opened(event):
        local.append(event.assoc.dul.socket.socket.getsockname()[:2])

    handlers = [*kwargs.pop("evt_handlers", []), (evt.EVT_CONN_OPEN, opened)]
    assoc = ae.associate(
        "127.0.0.1", port, ae_title=called, evt_handlers=handlers, **kwargs
    )
    assert local, "pynetdicom never opened its connection"
    host, localPort = local[0]
    return assoc, f"{host}:{localPort}"


def echoAndRelease(assoc) -> int:
    """
    Send one C-ECHO on an established association, release it and return
    the response status; abort it if anything fails.
    """
    try:
        assert assoc.is_established
        response = assoc.send_c_echo()
        assert "Status" in response, response
        status = response.Status
        assoc.release()
        assert assoc.is_released
        return status
    finally:
        if assoc.is_established:
            assoc.abort()


def rejection(assoc) -> tuple[int, int, int]:
    """
    The (result, source, reason) of pynetdicom's A-ASSOCIATE-RJ confirmation.
    """
    assert assoc.is_rejected, (assoc.is_aborted, assoc.acceptor.primitive)
    assert not assoc.is_established
    answer = assoc.acceptor.primitive
    return (answer.result, answer.result_source, answer.diagnostic)
