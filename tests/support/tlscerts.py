# -*- test-case-name: tests.test_tls -*-
"""
A throw-away PKI for the TLS tests, generated at test time with
C{cryptography}: nothing secret is committed, and every certificate is
valid from a day ago until 30 days from now.

L{TestPKI.create} writes these PEM files into a directory (keys are
unencrypted PKCS#8):

  - C{ca.pem}, C{ca.key}: the root CA the server and the clients trust.
  - C{server.pem}, C{server.key}: the server, signed by the root; SAN DNS
    C{localhost}, IP C{127.0.0.1} and C{::1}; EKU serverAuth.
  - C{client.pem}, C{client.key}: a modality (C{CN=modality1, O=dicomecho
    tests}), signed by the root; EKU clientAuth.
  - C{rogue-ca.pem}, C{rogue-ca.key}, C{rogue.pem}, C{rogue.key}: a second,
    untrusted CA and a client it signed (same subject as the real client).
  - C{intermediate.pem}, C{intermediate.key}: a CA signed by the root.
  - C{server-chain.pem}, C{server-chain.key}: a server signed by the
    intermediate, the PEM file holding the leaf then the intermediate.
  - C{ec-server.pem}, C{ec-server.key}: the server again with an ECDSA key.

Keys: the servers use RSA 2048, because DCMTK 3.6.7's default profile
("Non-downgrading BCP 195") offers only C{*_RSA_*} suites for TLS 1.2;
the CAs and clients use ECDSA P-256 (instant to generate; the client's
signature algorithm does not depend on the cipher suite). One RSA key is
made per process and reused, so L{TestPKI.create} takes well under a
second.

The module is a plain helper: test modules build the PKI once per session
in their own fixture, e.g.::

    @pytest.fixture(scope="session")
    def pki(tmp_path_factory):
        return TestPKI.create(tmp_path_factory.mktemp("pki"))
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TestPKI", "CLIENT_SUBJECT", "createPKI"]

#: The subject of the trusted (and of the rogue) client certificate, as
#: RFC 4514 writes it.
CLIENT_SUBJECT = "CN=modality1,O=dicomecho tests"

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]


@functools.lru_cache(maxsize=None)
def _rsaKey(which: str) -> rsa.RSAPrivateKey:
    """
    One RSA 2048 key per C{which} and process: RSA generation is the slow
    part, and test keys need not be distinct between PKIs.
    """
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ecKey() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(commonName: str, organization: str = "dicomecho tests") -> x509.Name:
    # Most general first, as in the certificate; RFC 4514 prints it
    # reversed ("CN=...,O=...").
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, commonName),
        ]
    )


def _keyUsage(*, ca: bool, key: PrivateKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # RSA TLS 1.2 leaves: harmless, and some verifiers insist on it.
        key_encipherment=not ca and isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    subject: x509.Name,
    key: PrivateKey,
    issuer: x509.Certificate | None,
    issuerKey: PrivateKey,
    *,
    ca: bool,
    usage: x509.ObjectIdentifier | None = None,
    names: list[x509.GeneralName] | None = None,
    validDays: tuple[int, int] = (-1, 30),
) -> x509.Certificate:
    """
    Sign a certificate for C{key}; self-signed when C{issuer} is C{None}.

    @param validDays: the validity period, in days from now.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    issuerName = subject if issuer is None else issuer.subject
    issuerPublic = key.public_key() if issuer is None else issuer.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuerName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=validDays[0]))
        .not_valid_after(now + datetime.timedelta(days=validDays[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_keyUsage(ca=ca, key=key), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuerPublic),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuerKey, hashes.SHA256())


def _serverNames() -> list[x509.GeneralName]:
    return [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]


def _writeKey(path: Path, key: PrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _writeCertificates(path: Path, *certificates: x509.Certificate) -> None:
    path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    )


@dataclass(frozen=True)
class TestPKI:
    """
    The paths of a generated PKI (see the module docstring), as C{str} so
    they drop straight into endpoint descriptions and command lines.
    """

    __test__ = False  # not a pytest test class

    directory: Path

    def path(self, name: str) -> str:
        """
        @return: the path of file C{name} (e.g. C{"client.pem"}).
        """
        return str(self.directory / name)

    @property
    def caCert(self) -> str:
        return self.path("ca.pem")

    @property
    def serverCert(self) -> str:
        return self.path("server.pem")

    @property
    def serverKey(self) -> str:
        return self.path("server.key")

    @property
    def clientCert(self) -> str:
        return self.path("client.pem")

    @property
    def clientKey(self) -> str:
        return self.path("client.key")

    @property
    def rogueCert(self) -> str:
        return self.path("rogue.pem")

    @property
    def rogueKey(self) -> str:
        return self.path("rogue.key")

    def issueClient(
        self,
        name: str,
        commonName: str,
        organization: str = "dicomecho tests",
        *,
        expired: bool = False,
    ) -> tuple[str, str]:
        """
        Sign one more client certificate with the root CA, e.g. with a
        non-ASCII subject, or one that has expired.

        @param name: the file names: C{name.pem} and C{name.key}.
        @return: the paths of the certificate and of the key.
        """
        ca, caKey = _loadIssuer(self.directory)
        key = _ecKey()
        certificate = _certificate(
            _name(commonName, organization),
            key,
            ca,
            caKey,
            ca=False,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            validDays=(-30, -1) if expired else (-1, 30),
        )
        _writeKey(self.directory / f"{name}.key", key)
        _writeCertificates(self.directory / f"{name}.pem", certificate)
        return self.path(f"{name}.pem"), self.path(f"{name}.key")

    @classmethod
    def create(cls, directory: Path | str) -> TestPKI:
        """
        Generate the PKI and write its files into C{directory} (created if
        missing; existing files are overwritten).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)

        caKey = _ecKey()
        ca = _certificate(_name("dicomecho test root CA"), caKey, None, caKey, ca=True)
        serverKey = _rsaKey("server")
        server = _certificate(
            _name("localhost"),
            serverKey,
            ca,
            caKey,
            ca=False,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            names=_serverNames(),
        )
        ecServerKey = _ecKey()
        ecServer = _certificate(
            _name("localhost"),
            ecServerKey,
            ca,
            caKey,
            ca=False,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            names=_serverNames(),
        )
        clientKey = _ecKey()
        client = _certificate(
            _name("modality1"),
            clientKey,
            ca,
            caKey,
            ca=False,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        intermediateKey = _ecKey()
        intermediate = _certificate(
            _name("dicomecho test intermediate CA"), intermediateKey, ca, caKey, ca=True
        )
        chainKey = _rsaKey("server-chain")
        chainServer = _certificate(
            _name("localhost"),
            chainKey,
            intermediate,
            intermediateKey,
            ca=False,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            names=_serverNames(),
        )
        rogueCAKey = _ecKey()
        rogueCA = _certificate(
            _name("rogue CA", "somebody else"), rogueCAKey, None, rogueCAKey, ca=True
        )
        rogueKey = _ecKey()
        rogue = _certificate(
            _name("modality1"),
            rogueKey,
            rogueCA,
            rogueCAKey,
            ca=False,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )

        for name, key, chain in [
            ("ca", caKey, [ca]),
            ("server", serverKey, [server]),
            ("ec-server", ecServerKey, [ecServer]),
            ("client", clientKey, [client]),
            ("intermediate", intermediateKey, [intermediate]),
            ("server-chain", chainKey, [chainServer, intermediate]),
            ("rogue-ca", rogueCAKey, [rogueCA]),
            ("rogue", rogueKey, [rogue]),
        ]:
            _writeKey(directory / f"{name}.key", key)
            _writeCertificates(directory / f"{name}.pem", *chain)
        return cls(directory)


def _loadIssuer(directory: Path) -> tuple[x509.Certificate, PrivateKey]:
    certificate = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    return certificate, key  # type: ignore[return-value]


def createPKI(directory: Path | str) -> TestPKI:
    """
    Shorthand for L{TestPKI.create}.
    """
    return TestPKI.create(directory)
