"""
Run a L{DICOMServerFactory} on 127.0.0.1 for real-peer tests.

Usage: C{python -m tests.support.serve '{"aeTitle": "ECHOSCP", ...}'}. Factory
keyword arguments come as one JSON object. Prints C{PORT <n>} on stdout once
listening, then one line per dicomecho log event on stdout:
C{EVENT <dicomEvent> <JSON of the event's plain fields>}. Stops on SIGTERM
or when stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from twisted.internet import reactor, stdio
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import LogLevel, formatEvent, globalLogBeginner

from dicomecho.observability.levels import setLogLevel
from dicomecho.association.negotiation import TransferSyntaxPreference
from dicomecho.security.sourcelimits import SourceLimitsPolicy
from dicomecho.server.factory import DICOMServerFactory

PLAIN = (str, int, float, bool, type(None))


def observer(event: dict[str, Any]) -> None:
    if "dicomEvent" in event:
        fields = {k: v for k, v in event.items() if isinstance(v, PLAIN) and not k.startswith("log_")}
        fields["text"] = formatEvent(event)
        print("EVENT", event["dicomEvent"], json.dumps(fields), flush=True)
    elif event.get("log_failure") is not None:
        print("FAILURE", json.dumps(formatEvent(event)), flush=True)
        event["log_failure"].printTraceback(sys.stdout)
        sys.stdout.flush()


class StopOnEOF(Protocol):
    def connectionLost(self, reason: object = None) -> None:
        if reactor.running:
            reactor.stop()


def main() -> None:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    if "transferSyntaxes" in options:
        options["transferSyntaxes"] = TransferSyntaxPreference[options["transferSyntaxes"]]
    if "sourceLimits" in options:
        options["sourceLimits"] = SourceLimitsPolicy(**options["sourceLimits"])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    setLogLevel(LogLevel.debug)
    factory = DICOMServerFactory(**options)
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")

    def listening(port: Any) -> None:
        print("PORT", port.getHost().port, flush=True)

    endpoint.listen(factory).addCallback(listening)
    # StandardIO makes its stdin and stdout non-blocking; give it a stdout of
    # its own so event lines written to fd 1 are never dropped or cut.
    quiet = os.open(os.devnull, os.O_WRONLY)
    stdio.StandardIO(StopOnEOF(), stdin=0, stdout=quiet)
    reactor.run()


if __name__ == "__main__":
    main()
