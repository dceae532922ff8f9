# -*- test-case-name: tests.test_tlsendpoint -*-
"""
The C{dicomtls:} endpoint description: DICOM over TLS (PS3.15 Annex B.12).

    dicomtls:2762:privateKey=server.key:certKey=server.pem
        [:caCerts=ca.pem][:requireClientCert=yes|no]
        [:interface=ADDR][:backlog=N]

for C{twistd dicomecho --listen ...}, C{python -m dicomecho --listen ...}
or L{serverFromString <twisted.internet.endpoints.serverFromString>}.

Keep this module import-light: every C{getPlugins()} call (twistd, trial,
any endpoint description) imports it. It must not import the reactor;
C{dicomecho.server.tlsendpoint} (pyOpenSSL, cryptography) is imported only
when a C{dicomtls:} description is parsed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer

__all__ = ["DICOMTLSServerParser", "dicomtls"]


@implementer(IPlugin, IStreamServerEndpointStringParser)
class DICOMTLSServerParser:
    """
    Parses C{dicomtls:} descriptions into
    L{dicomecho.server.tlsendpoint.DICOMTLSServerEndpoint}s.
    """

    prefix = "dicomtls"

    def parseStreamServer(self, reactor: Any, *args: str, **kwargs: str) -> Any:
        """
        See L{dicomecho.server.tlsendpoint.parseStreamServer}.
        """
        from dicomecho.server.tlsendpoint import parseStreamServer

        return parseStreamServer(reactor, *args, **kwargs)


dicomtls = DICOMTLSServerParser()
