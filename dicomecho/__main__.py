# -*- test-case-name: tests.test_cli -*-
"""
C{python -m dicomecho [options] [port]}, also the C{dicomecho} script:
pynetdicom echoscp's command line, running the same service as C{twistd
dicomecho} on the reactor, with echoscp-style log lines on stderr. Exits 0
on SIGINT or SIGTERM, 1 if it cannot listen, 2 on a usage error.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from twisted.logger import globalLogBeginner
from twisted.python import usage

from dicomecho.server.commandline import usageError
from dicomecho.observability.logs import consoleObserver
from dicomecho.server.tap import Options, makeService


def commandName(argv0: str) -> str:
    """
    How the user ran us, for C{--help} and usage errors: the console
    script by its name, C{python -m dicomecho} otherwise.
    """
    if os.path.basename(argv0) == "dicomecho":
        return "dicomecho"
    return "python -m dicomecho"


def main(argv: Sequence[str] | None = None) -> int:
    """
    Parse C{argv} (default: C{sys.argv[1:]}) and serve until stopped.

    @return: the exit status.
    """
    options = Options()
    options.command = commandName(sys.argv[0])
    try:
        options.parseOptions(list(sys.argv[1:] if argv is None else argv))
    except usage.UsageError as e:
        return usageError(options.getSynopsis(), options.command, e, sys.stderr)

    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([consoleObserver(sys.stderr)], redirectStandardIO=False)
    service = makeService(options, reactor)
    try:
        service.privilegedStartService()
    except Exception as e:
        print(f"E: cannot listen: {e}", file=sys.stderr)
        return 1
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()  # its SIGINT/SIGTERM handlers stop it cleanly
    return 0


if __name__ == "__main__":
    sys.exit(main())
