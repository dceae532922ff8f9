# -*- test-case-name: tests.test_tls -*-
"""
DICOM over TLS: the server side of PS3.15 Annex B.12, "BCP 195 RFC 8996
(9325) TLS Secure Transport Connection Profile".

What the profile asks of a server, and where it is done here:

  - TLS 1.2 shall be supported and TLS 1.3 may be; nothing older (RFC 8996
    deprecates TLS 1.0 and 1.1): L{serverContextFactory} raises the minimum
    to TLS 1.2 and leaves TLS 1.3 on.
  - A server shall prefer TLS 1.3 when a client offers it: OpenSSL always
    picks the highest version both sides support.
  - TLS 1.2 cipher suites as RFC 9325 recommends: L{BCP195_CIPHERS}, chosen
    in our order rather than the client's. The TLS 1.3 suites are all AEAD
    and are left to OpenSSL.
  - Port 2762 is registered as "dicom-tls"; PS3.15 wants the TLS port to
    differ from the plain one.

L{tlsSessionInfo} gives the log what it needs to say who connected;
L{dicomecho.security.tlsfailures} says why a handshake failed. The
listening side (the C{dicomtls:} endpoint) is
L{dicomecho.server.tlsendpoint}.

The TLS work itself is Twisted's (L{CertificateOptions}) and OpenSSL's;
this module only configures it.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion

from dicomecho.security.tlsfailures import openSSLReasons

__all__ = [
    "BCP195_CIPHERS",
    "DICOM_TLS_PORT",
    "TLSConfigurationError",
    "serverContextFactory",
    "verifyErrorText",
    "nameString",
    "tlsSessionInfo",
]

#: The port IANA registered as "dicom-tls" (PS3.15 Annex B).
DICOM_TLS_PORT = 2762

#: The TLS 1.2 cipher suites we accept, in our order of preference (OpenSSL
#: names). RFC 9325 section 4.2 recommends exactly the four ECDHE AES-GCM
#: suites (ECDSA and RSA certificates); AES-256 comes first, as section
#: 4.2.1 asks of a server whose client offers it. ECDHE with
#: CHACHA20-POLY1305 (RFC 7905) follows, as the one other suite meeting
#: section 4.1 (AEAD, forward secrecy) for peers without AES hardware.
#: Left out: RSA key exchange (no forward secrecy), CBC modes, and DHE,
#: which section 4.1 says not to negotiate. DCMTK's default profile
#: ("Non-downgrading BCP 195", 3.6.7) offers ECDHE-RSA-AES-GCM, so an RSA
#: server certificate serves it over TLS 1.2. These names only govern TLS
#: 1.2: OpenSSL configures the TLS 1.3 suites apart, and all of them are
#: AEAD with (EC)DHE.
BCP195_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)

class TLSConfigurationError(ValueError):
    """
    The TLS settings cannot be used: a file is missing or unreadable, holds
    no usable key or certificate, the key does not match the certificate,
    or the options contradict each other. The message names the file and
    the problem.
    """


# --- the server's TLS settings ----------------------------------------------


def _readFile(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigurationError(
            f"cannot read the {what} file {path!r}: {e.strerror or e}"
        ) from None


def _loadCertificates(path: str, what: str) -> list[x509.Certificate]:
    data = _readFile(path, what)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSConfigurationError(
            f"the {what} file {path!r} holds no PEM certificate "
            f"(expected '-----BEGIN CERTIFICATE-----' blocks)"
        ) from None


def _loadPrivateKey(path: str) -> Any:
    data = _readFile(path, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography: "Password was not given but private key is encrypted"
        raise TLSConfigurationError(
            f"the private key file {path!r} is encrypted; dicomecho needs an "
            f"unencrypted key (e.g. openssl pkey -in KEY -out PLAIN.key), "
            f"readable only by the server's user"
        ) from None
    except Exception as e:  # ValueError, UnsupportedAlgorithm
        raise TLSConfigurationError(
            f"the private key file {path!r} holds no usable PEM private key "
            f"({type(e).__name__})"
        ) from None


def _publicBytes(publicKey: Any) -> bytes:
    return publicKey.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _keyAndChain(privateKey: str, certKey: str) -> tuple[Any, list[x509.Certificate]]:
    """
    The server's private key and certificate chain, the certificate that
    matches the key first.

    @raise TLSConfigurationError: if they cannot be read, or do not match.
    """
    key = _loadPrivateKey(privateKey)
    chain = _loadCertificates(certKey, "certificate")
    keyPublic = _publicBytes(key.public_key())
    if _publicBytes(chain[0].public_key()) != keyPublic:
        if any(_publicBytes(c.public_key()) == keyPublic for c in chain[1:]):
            raise TLSConfigurationError(
                f"the server certificate must come first in {certKey!r}, "
                f"followed by its intermediate CA certificates"
            )
        raise TLSConfigurationError(
            f"the private key in {privateKey!r} does not match the "
            f"certificate in {certKey!r}"
        )
    return key, chain


def _trustedCAs(caCerts: str) -> list[crypto.X509]:
    """
    The CA certificates of the bundle C{caCerts}, as pyOpenSSL's X509:
    Twisted adds them to an X509Store, which takes those.
    """
    return [crypto.X509.from_cryptography(c) for c in _loadCertificates(caCerts, "CA certificates")]


def _buildContext(options: CertificateOptions, privateKey: str, certKey: str) -> None:
    """
    Build the OpenSSL context of C{options} now (it is cached and used by
    every connection), which also runs OpenSSL's own key check.

    @raise TLSConfigurationError: if OpenSSL refuses the key or certificate.
    """
    try:
        options.getContext()
    except SSL.Error as e:
        raise TLSConfigurationError(
            f"OpenSSL refused the key {privateKey!r} and certificate "
            f"{certKey!r}: {openSSLReasons(e) or e}"
        ) from None


def serverContextFactory(
    privateKey: str,
    certKey: str,
    caCerts: str | None = None,
    requireClientCert: bool | None = None,
) -> CertificateOptions:
    """
    The TLS settings of a DICOM server (PS3.15 B.12): TLS 1.2 or 1.3,
    L{BCP195_CIPHERS} for TLS 1.2 in our order, and, given C{caCerts},
    client certificates verified against those CAs.

    @param privateKey: path of the server's PEM private key (unencrypted).
    @param certKey: path of a PEM file with the server's certificate first,
        then any intermediate CA certificates clients need to build the
        chain. (It may also hold the private key.)
    @param caCerts: path of a PEM bundle of the CA certificates client
        certificates must chain to; C{None} to ask for no client
        certificate.
    @param requireClientCert: refuse clients without a certificate;
        defaults to C{True} when C{caCerts} is given. C{False} with
        C{caCerts} asks for a certificate and verifies any that is sent,
        but lets clients without one in.
    @return: the settings, already turned into an OpenSSL context once, so
        that any mistake shows at start-up rather than at the first
        connection.
    @raise TLSConfigurationError: if a file cannot be read or used, the key
        does not match the certificate, or C{requireClientCert} is C{True}
        without C{caCerts}.
    """
    if requireClientCert is None:
        requireClientCert = caCerts is not None
    if requireClientCert and caCerts is None:
        raise TLSConfigurationError(
            "requireClientCert needs caCerts: the CA certificates that client "
            "certificates must be signed by"
        )

    key, chain = _keyAndChain(privateKey, certKey)
    trusted = _trustedCAs(caCerts) if caCerts is not None else None
    options = CertificateOptions(
        # cryptography objects: pyOpenSSL deprecates its own X509 and PKey
        # for these, and Twisted hands them straight to pyOpenSSL.
        privateKey=key,
        certificate=chain[0],  # type: ignore[arg-type]
        extraCertChain=chain[1:],  # type: ignore[arg-type]
        # Twisted's default minimum is already TLS 1.2; raising (rather than
        # setting) it keeps any later, higher default. TLS 1.3 stays on.
        raiseMinimumTo=TLSVersion.TLSv1_2,
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(BCP195_CIPHERS),
        # verify=True with caCerts: OpenSSL asks for a client certificate
        # and fails the handshake if one is sent that does not chain to
        # these CAs; requireCertificate also fails it if none is sent.
        verify=trusted is not None,
        caCerts=trusted,
        requireCertificate=requireClientCert,
    )
    # CertificateOptions always sets OP_CIPHER_SERVER_PREFERENCE: our order
    # of BCP195_CIPHERS wins.
    _buildContext(options, privateKey, certKey)
    return options


# --- the log's view ---------------------------------------------------------


def verifyErrorText(code: int) -> str:
    """
    OpenSSL's X509 verification error C{code} in words, from pyOpenSSL's
    names for it (the numbers differ between OpenSSL versions), e.g.
    C{ERR_CERT_HAS_EXPIRED} -> C{"certificate has expired"}.
    """
    for name, value in vars(SSL.X509VerificationCodes).items():
        if name.startswith("ERR_") and value == code:
            words = name[len("ERR_") :].lower().split("_")
            return " ".join("certificate" if w == "cert" else w for w in words)
    return f"X509 verification error {code}"


def nameString(name: x509.Name) -> str:
    """
    An RFC 4514 string of C{name}; never raises (attributes cryptography
    cannot decode are left out).
    """
    try:
        return name.rfc4514_string()
    except Exception:
        parts = []
        for attribute in reversed(list(name)):
            try:
                parts.append(x509.Name([attribute]).rfc4514_string())
            except Exception:
                parts.append(f"{attribute.oid.dotted_string}=?")
        return ",".join(parts)


def tlsSessionInfo(transport: Any) -> dict[str, str | None]:
    """
    What the TLS session of a connection is, for the log.

    @param transport: the DICOM protocol's transport (a
        L{TLSMemoryBIOProtocol}); anything else gives all C{None}.
    @return: C{tlsVersion} (e.g. C{"TLSv1.3"}), C{tlsCipher} (OpenSSL's
        name), C{tlsSubject} and C{tlsIssuer} (the client certificate's, as
        RFC 4514 strings such as C{"CN=modality1,O=Hospital"}; C{None}
        without one; after a failed handshake, those of the certificate
        OpenSSL refused, if any). Without a cipher (a handshake that failed
        early) the version is C{None} too. Nothing is escaped here.
    """
    info: dict[str, str | None] = {
        "tlsVersion": None,
        "tlsCipher": None,
        "tlsSubject": None,
        "tlsIssuer": None,
    }
    getHandle = getattr(transport, "getHandle", None)
    connection = getHandle() if getHandle is not None else None
    # A plain TCP transport's handle is its socket.
    if not isinstance(connection, SSL.Connection):
        return info
    cipher = connection.get_cipher_name()
    if cipher is not None:
        info["tlsCipher"] = cipher
        info["tlsVersion"] = connection.get_protocol_version_name()
    certificate = connection.get_peer_certificate(as_cryptography=True)
    if certificate is None:
        certificate = getattr(transport, "rejectedCertificate", None)
    if certificate is not None:
        info["tlsSubject"] = nameString(certificate.subject)
        info["tlsIssuer"] = nameString(certificate.issuer)
    return info
