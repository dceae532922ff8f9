# -*- test-case-name: tests.test_tls -*-
"""
Why a TLS handshake failed, as a kind (the metric label) and one short
sentence for the log.

L{classifyHandshakeFailure} reads what ended the handshake (an OpenSSL
error, a closed connection) and the first bytes the peer sent (plain DICOM
or HTTP on the TLS port, ...); L{handshakeTimeout} is the failure of a
handshake the ACSE timeout cut short. Both give a L{HandshakeFailure}:
its C{kind} is a L{TLSFailureKind}, whose value is the metric label; its
C{sentence} is rendered from a template of its kind and the details.

pyOpenSSL is imported only when a failure is classified, so that the
kinds cost a plain (non-TLS) server nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

from dicomecho.wire.recognition import FirstBytes, recognize

__all__ = [
    "TLSFailureKind",
    "HandshakeFailure",
    "classifyHandshakeFailure",
    "handshakeTimeout",
    "noteRefusedCertificate",
    "openSSLReasons",
]


class TLSFailureKind(Enum):
    """
    What kind of TLS handshake failure it was; the value is the metric
    label (C{dicomecho_tls_handshake_failures_total{kind=...}}).
    """

    PLAIN_DICOM = "plain-dicom"
    HTTP = "http"
    OLD_VERSION = "old-version"
    NO_CLIENT_CERTIFICATE = "no-client-certificate"
    UNTRUSTED_CERTIFICATE = "untrusted-certificate"
    NO_SHARED_CIPHER = "no-shared-cipher"
    TIMEOUT = "timeout"
    SERVER_CERTIFICATE_REJECTED = "server-certificate-rejected"
    CLOSED = "closed"
    OTHER = "other"


_K = TLSFailureKind


class _Case(Enum):
    """
    Each sentence a failure can have: its kind and a template of the
    details.
    """

    PLAIN_DICOM = (_K.PLAIN_DICOM, "plain DICOM (an A-ASSOCIATE-RQ) on the TLS port")
    HTTP = (_K.HTTP, "HTTP on the TLS port")
    PROXY_HEADER = (_K.OTHER, "a PROXY protocol header on the TLS port (not expected here)")
    SSLV2 = (_K.OLD_VERSION, "an SSLv2-format ClientHello (a very old client)")
    NOT_TLS = (_K.OTHER, "not TLS on the TLS port (first bytes {})")
    OLD_VERSION = (_K.OLD_VERSION, "the client offered only TLS versions below 1.2")
    NO_CERTIFICATE = (_K.NO_CLIENT_CERTIFICATE, "no client certificate (one is required)")
    UNTRUSTED = (_K.UNTRUSTED_CERTIFICATE, "the client certificate is not trusted ({})")
    NO_CIPHER = (_K.NO_SHARED_CIPHER, "no cipher suite in common")
    OUR_CERTIFICATE = (_K.SERVER_CERTIFICATE_REJECTED, "the client rejected our certificate ({})")
    FAILED = (_K.OTHER, "TLS handshake failed: {}")
    ABORTED = (_K.CLOSED, "the connection was aborted during the TLS handshake")
    CLOSED_SILENT = (_K.CLOSED, "the client closed the connection without sending anything")
    CLOSED = (_K.CLOSED, "the client closed the connection during the TLS handshake")
    TIMEOUT = (_K.TIMEOUT, "handshake not completed within {:g} s (ACSE timeout)")

    def __init__(self, kind: TLSFailureKind, template: str) -> None:
        self.kind = kind
        self.template = template


@dataclass(frozen=True, slots=True)
class HandshakeFailure:
    """
    A failed TLS handshake.

    @ivar kind: a L{TLSFailureKind}; C{kind.value} is the metric label.
    @ivar sentence: why, in one short sentence for the log. OpenSSL's
        reason texts are quoted; no key material ever is.
    """

    kind: TLSFailureKind
    sentence: str

    def __str__(self) -> str:
        return self.sentence


def _failure(case: _Case, *details: object) -> HandshakeFailure:
    """
    The failure of C{case}: its kind, its sentence rendered with C{details}.
    """
    return HandshakeFailure(case.kind, case.template.format(*details))


def handshakeTimeout(seconds: float) -> HandshakeFailure:
    """
    The handshake did not complete within the ACSE timeout of C{seconds}.
    """
    return _failure(_Case.TIMEOUT, seconds)


# OpenSSL reason texts (any version we met: 3.0 to 4.0), by case.
_OLD_VERSIONS = ("unsupported protocol", "version too low")
_NO_CERTIFICATE = ("peer did not return a certificate",)
_UNTRUSTED = ("certificate verify failed",)
_NO_CIPHER = ("no shared cipher",)
_BAD_OUR_CERTIFICATE = (
    "unknown ca",
    "bad certificate",
    "certificate unknown",
    "certificate expired",
    "certificate revoked",
    "unsupported certificate",
)

#: How L{noteRefusedCertificate} starts its note.
_VERIFY_NOTE = "client certificate refused: "


def noteRefusedCertificate(error: BaseException, why: str) -> None:
    """
    Add to the L{SSL.Error} of a handshake (which only says "certificate
    verify failed") why OpenSSL refused the client certificate, e.g.
    C{"certificate has expired"}, for L{classifyHandshakeFailure}. Once.
    """
    from OpenSSL import SSL

    notes = getattr(error, "__notes__", [])
    if isinstance(error, SSL.Error) and not any(n.startswith(_VERIFY_NOTE) for n in notes):
        error.add_note(f"{_VERIFY_NOTE}{why}")


def openSSLReasons(error: BaseException) -> str:
    """
    The reason strings of an L{SSL.Error}'s error queue, joined with "; ",
    duplicates dropped. Only OpenSSL's fixed texts: no key material.
    """
    reasons: list[str] = []
    queue = error.args[0] if error.args else None
    if isinstance(queue, list):
        for entry in queue:
            text = entry[-1] if isinstance(entry, tuple) and entry else entry
            text = str(text)
            if text and text not in reasons:
                reasons.append(text)
    elif error.args:
        reasons.extend(str(a) for a in error.args if a not in (None, ""))
    return "; ".join(reasons)


def _fromFirstBytes(firstBytes: bytes, sslError: bool) -> HandshakeFailure | None:
    """
    What the peer sent first, when that tells a non-TLS client apart,
    whatever OpenSSL made of it ("wrong version number", "http request").
    """
    seen = recognize(firstBytes)
    if seen is FirstBytes.DICOM:
        return _failure(_Case.PLAIN_DICOM)
    if seen is FirstBytes.HTTP:
        return _failure(_Case.HTTP)
    if seen is FirstBytes.PROXY_V1 or seen is FirstBytes.PROXY_V2:
        return _failure(_Case.PROXY_HEADER)
    if not sslError:
        return None
    if seen is FirstBytes.SSLV2:
        return _failure(_Case.SSLV2)
    if seen not in (FirstBytes.NOTHING, FirstBytes.TLS, FirstBytes.TLS_UNKNOWN_VERSION):
        return _failure(_Case.NOT_TLS, " ".join(f"{b:02x}" for b in firstBytes[:8]))
    return None


def _fromOpenSSL(error: BaseException) -> HandshakeFailure:
    reasons = openSSLReasons(error)
    lowered = reasons.lower()
    if any(r in lowered for r in _OLD_VERSIONS):
        return _failure(_Case.OLD_VERSION)
    if any(r in lowered for r in _NO_CERTIFICATE):
        return _failure(_Case.NO_CERTIFICATE)
    if any(r in lowered for r in _UNTRUSTED):
        notes = getattr(error, "__notes__", [])
        why = [n[len(_VERIFY_NOTE) :] for n in notes if n.startswith(_VERIFY_NOTE)]
        return _failure(_Case.UNTRUSTED, why[0] if why else reasons)
    if any(r in lowered for r in _NO_CIPHER):
        return _failure(_Case.NO_CIPHER)
    if "alert" in lowered and any(r in lowered for r in _BAD_OUR_CERTIFICATE):
        return _failure(_Case.OUR_CERTIFICATE, reasons)
    return _failure(_Case.FAILED, reasons or type(error).__name__)


def classifyHandshakeFailure(
    reason: Failure | BaseException, firstBytes: bytes = b""
) -> HandshakeFailure:
    """
    Why a TLS handshake failed.

    @param reason: what the DICOM protocol's C{connectionLost} received: an
        L{SSL.Error} (its arguments: OpenSSL's error queue, a list of
        C{(library, function, reason)}), or a connection error.
    @param firstBytes: the first bytes the peer sent (up to 16): they tell
        plain DICOM, HTTP or a PROXY header apart from broken TLS.
    @return: e.g. kind L{TLSFailureKind.PLAIN_DICOM}, sentence C{"plain
        DICOM (an A-ASSOCIATE-RQ) on the TLS port"}.
    """
    from OpenSSL import SSL

    error = reason.value if isinstance(reason, Failure) else reason
    sslError = isinstance(error, SSL.Error)
    seen = _fromFirstBytes(firstBytes, sslError)
    if seen is not None:
        return seen
    if sslError:
        return _fromOpenSSL(error)
    if isinstance(error, ConnectionAborted):
        return _failure(_Case.ABORTED)
    if isinstance(error, (ConnectionDone, ConnectionLost)):
        return _failure(_Case.CLOSED if firstBytes else _Case.CLOSED_SILENT)
    return _failure(_Case.FAILED, f"{type(error).__name__}: {error}")

