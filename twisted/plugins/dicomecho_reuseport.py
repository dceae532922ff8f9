# -*- test-case-name: tests.test_reuseport -*-
"""
The C{reuseport:} endpoint description: TCP with C{SO_REUSEPORT}, so that
several dicomecho processes can listen on one port.

    reuseport:11112[:interface=ADDR][:backlog=N]

for C{twistd dicomecho --listen ...}, C{python -m dicomecho --listen ...}
or L{serverFromString <twisted.internet.endpoints.serverFromString>}.

Keep this module import-light: every C{getPlugins()} call (twistd, trial,
any endpoint description) imports it. It must not import the reactor;
C{dicomecho.server.reuseport} is imported only when a C{reuseport:} description
is parsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorSocket, IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer

if TYPE_CHECKING:
    from dicomecho.server.reuseport import ReusePortServerEndpoint

__all__ = ["ReusePortServerParser", "reuseport"]


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ReusePortServerParser:
    """
    Parses C{reuseport:} descriptions into
    L{dicomecho.server.reuseport.ReusePortServerEndpoint}s.
    """

    prefix = "reuseport"

    def parseStreamServer(
        self, reactor: IReactorSocket, *args: str, **kwargs: str
    ) -> ReusePortServerEndpoint:
        """
        See L{dicomecho.server.reuseport.parseStreamServer}.
        """
        from dicomecho.server.reuseport import parseStreamServer

        return parseStreamServer(reactor, *args, **kwargs)


reuseport = ReusePortServerParser()
