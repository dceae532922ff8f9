# -*- test-case-name: tests.test_tap -*-
"""
The twistd subcommand: L{Options} (echoscp's options, with pynetdicom's
spellings accepted) and L{makeService}.

Long option names are canonical. L{Options.parseOptions} also accepts
echoscp's single-dash multi-letter spellings (C{-aet}, C{-ta}, C{-td},
C{-tn}, C{-pdu}, C{-ba}, C{-ll}, C{-x=}, C{-xe}, C{-xb}, C{-xi}) so that a
command line copied from C{python -m pynetdicom echoscp} works.

Importing this module does not import the reactor.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.interfaces import IListeningPort
from twisted.logger import LogLevel
from twisted.python import usage

from dicomecho import __version__
from dicomecho.security.access import AccessList, parseNetwork, peerAddress
from dicomecho.server.commandline import (
    HELP_TEXT,
    formatHelp,
    permuteArguments,
    translateAliases,
    usageError,
)
from dicomecho.security.identity import UserIdentityMode
from dicomecho.observability.logs import LOG_LEVEL_NAMES, listeningAddress, log, logStartup, setLogLevel
from dicomecho.wire.pdu import validateAETitle
from dicomecho.association.negotiation import (
    DEFAULT_MAX_ASSOCIATIONS,
    DEFAULT_MAX_PDU_LENGTH,
    MINIMUM_PEER_MAX_PDU_LENGTH,
    TransferSyntaxPreference,
)

__all__ = [
    "Options",
    "makeService",
    "DICOMEchoService",
    "DICOMListeningService",
    "validateAETitle",
]

DEFAULT_PORT = "11112"
DEFAULT_SHUTDOWN_GRACE = 5.0
DEFAULT_BACKLOG = 128

#: Threads checking user identity passcodes (scrypt) at once.
IDENTITY_THREADS = 4

_VERBOSITY = (("quiet", "-q/--quiet"), ("verbose", "-v/--verbose"), ("debug", "-d/--debug"))
_PREFERENCES = (
    ("prefer-uncompr", "-x=/--prefer-uncompr", TransferSyntaxPreference.PREFER_UNCOMPRESSED),
    ("prefer-little", "-xe/--prefer-little", TransferSyntaxPreference.PREFER_LITTLE),
    ("prefer-big", "-xb/--prefer-big", TransferSyntaxPreference.PREFER_BIG),
    ("implicit", "-xi/--implicit", TransferSyntaxPreference.IMPLICIT_ONLY),
)


def _seconds(value: str) -> float:
    seconds = float(value)
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"{value!r} is not a number of seconds >= 0")
    return seconds


def _maxPDU(value: str) -> int:
    size = int(value)
    if size != 0 and not MINIMUM_PEER_MAX_PDU_LENGTH <= size <= 0xFFFFFFFF:
        raise ValueError(
            f"{value} is not 0 (unlimited) or a size from "
            f"{MINIMUM_PEER_MAX_PDU_LENGTH} to {0xFFFFFFFF}"
        )
    return size


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a whole number >= 1")
    return number


def _logLevel(value: str) -> LogLevel:
    try:
        return LOG_LEVEL_NAMES[value.lower()]
    except KeyError:
        raise ValueError(
            f"{value!r} is not one of {', '.join(LOG_LEVEL_NAMES)}"
        ) from None


def _escapeValue(value: str) -> str:
    # A value in an endpoint description (an interface, a file name), where
    # ':' separates arguments and '\' escapes.
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _userIdentityMode(value: str) -> UserIdentityMode:
    try:
        return UserIdentityMode(value.lower())
    except ValueError:
        raise ValueError(
            f"{value!r} is not one of {', '.join(m.value for m in UserIdentityMode)}"
        ) from None


def _clientCertificate(value: str) -> str:
    if value not in ("required", "optional"):
        raise ValueError(f"{value!r} is not 'required' or 'optional'")
    return value


#: Endpoint types whose connections are TLS (for the start-up warning).
_TLS_PREFIXES = ("dicomtls:", "ssl:")


class Options(usage.Options):
    """
    Options of C{twistd dicomecho} and C{python -m dicomecho}: echoscp's,
    in any order with the port (L{permuteArguments}), then ours.

    @ivar command: how the user ran us, for C{--help} and usage errors.
    """

    synopsis = "[options] [port]"
    command = "python -m dicomecho"
    longdesc = (
        "A DICOM Verification SCP: answers C-ECHO from any DICOM peer to prove "
        "it can reach this host. Options and defaults follow pynetdicom's "
        "echoscp, and so do its spellings (-aet, -ta, -td, -tn, -pdu, -ba, "
        "-ll, -x=, -xe, -xb, -xi); options and the port may come in any order."
    )

    optFlags = [
        ["quiet", "q", HELP_TEXT["quiet"]],
        ["verbose", "v", HELP_TEXT["verbose"]],
        ["debug", "d", HELP_TEXT["debug"]],
        ["prefer-uncompr", None, HELP_TEXT["prefer-uncompr"]],
        ["prefer-little", None, HELP_TEXT["prefer-little"]],
        ["prefer-big", None, HELP_TEXT["prefer-big"]],
        ["implicit", None, HELP_TEXT["implicit"]],
        ["require-called-aet", None, HELP_TEXT["require-called-aet"]],
    ]

    optParameters: list[list[Any]] = [
        ["log-level", None, None, HELP_TEXT["log-level"], _logLevel],
        ["ae-title", None, "ECHOSCP", HELP_TEXT["ae-title"], validateAETitle],
        ["acse-timeout", None, 30.0, HELP_TEXT["acse-timeout"], _seconds],
        ["dimse-timeout", None, 30.0, HELP_TEXT["dimse-timeout"], _seconds],
        ["network-timeout", None, 30.0, HELP_TEXT["network-timeout"], _seconds],
        ["max-pdu", None, DEFAULT_MAX_PDU_LENGTH, HELP_TEXT["max-pdu"], _maxPDU],
        ["bind-address", None, "", HELP_TEXT["bind-address"]],
        ["max-associations", None, DEFAULT_MAX_ASSOCIATIONS, HELP_TEXT["max-associations"], _positive],
        ["backlog", None, DEFAULT_BACKLOG, HELP_TEXT["backlog"], _positive],
        ["shutdown-grace", None, DEFAULT_SHUTDOWN_GRACE, HELP_TEXT["shutdown-grace"], _seconds],
        ["user-identity", None, UserIdentityMode.IGNORE, HELP_TEXT["user-identity"], _userIdentityMode],
        ["credentials", None, None, HELP_TEXT["credentials"]],
        ["tls-key", None, None, HELP_TEXT["tls-key"]],
        ["tls-cert", None, None, HELP_TEXT["tls-cert"]],
        ["tls-ca", None, None, HELP_TEXT["tls-ca"]],
        ["tls-client-cert", None, None, HELP_TEXT["tls-client-cert"], _clientCertificate],
        ["metrics", None, None, HELP_TEXT["metrics"]],
    ]

    def __init__(self) -> None:
        super().__init__()
        # Multi-line opt_* docstrings: fold their indentation for --help.
        self.docs = {name: " ".join(doc.split()) for name, doc in self.docs.items()}
        self["port"] = DEFAULT_PORT
        self["listen"] = []
        self["allow-calling-aet"] = []
        self["allow-network"] = []
        self["allow-peer"] = []
        self._portGiven = False

    def opt_listen(self, description: str) -> None:
        """
        Listen on this endpoint description (repeatable), e.g. tcp:11112,
        tcp6:11112:interface=\\:\\:, unix:/tmp/dicom.sock,
        systemd:domain=INET:name=dicom.
        """
        self["listen"].append(description)

    def opt_allow_calling_aet(self, title: str) -> None:
        """
        Accept only this calling AE title (repeatable); others are rejected
        (permanent, calling-AE-title-not-recognized). Default: any.
        """
        try:
            self["allow-calling-aet"].append(validateAETitle(title))
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def opt_allow_network(self, network: str) -> None:
        """
        Accept connections only from this network (CIDR, IPv4 or IPv6;
        repeatable), from any calling AE title; other sources are closed
        on connect. Default: any.
        """
        try:
            self["allow-network"].append(parseNetwork(network))
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def opt_allow_peer(self, peer: str) -> None:
        """
        Accept this calling AE title from this network, as AET@CIDR
        (repeatable); its sources may connect, and associate with that
        title only (others are rejected: permanent,
        calling-AE-title-not-recognized).
        """
        title, at, network = peer.rpartition("@")
        if not at:
            raise usage.UsageError(f"--allow-peer {peer!r}: expected AET@CIDR, e.g. CT1@10.1.2.0/24")
        try:
            self["allow-peer"].append((validateAETitle(title), parseNetwork(network)))
        except ValueError as e:
            raise usage.UsageError(f"--allow-peer {peer!r}: {e}") from None

    def opt_version(self) -> None:
        """
        Print the version and exit.
        """
        print(f"dicomecho v{__version__}")
        raise SystemExit(0)

    def opt_port(self, value: str) -> None:
        """
        The port number or endpoint description (also the positional
        argument).
        """
        self["port"] = value
        self._portGiven = True

    opt_p = opt_port
    opt_h = usage.Options.opt_help

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Translate echoscp's single-dash spellings, put the options before
        the port, then parse as usual. Under twistd, a usage error is
        reported as under C{python -m dicomecho} (exit status 2).
        """
        import sys

        args = translateAliases(sys.argv[1:] if options is None else options)
        if "--_shell-completion" not in args:
            # (Twisted's shell completion wants its two arguments last.)
            args = permuteArguments(args, self.longOpt, self.shortOpt)
        if self.parent is None:
            super().parseOptions(args)
            return
        self.command = "twistd dicomecho"
        try:
            super().parseOptions(args)
        except usage.UsageError as e:
            raise SystemExit(
                usageError(self.getSynopsis(), self.command, e, sys.stderr)
            ) from None

    def parseArgs(self, *ports: str) -> None:
        if len(ports) > 1:
            raise usage.UsageError(f"unrecognized arguments: {' '.join(ports[1:])}")
        if ports:
            self.opt_port(ports[0])

    def getSynopsis(self) -> str:
        """
        echoscp's usage line, with the command the user ran.
        """
        if self.parent is not None:
            return f"usage: twistd [options] dicomecho {self.synopsis}"
        return f"usage: {self.command} {self.synopsis}"

    def getUsage(self, width: int | None = None) -> str:
        """
        C{--help} after the usage line: the options grouped as echoscp
        groups them, then dicomecho's own (L{dicomecho.server.commandline.HELP}).
        """
        import os

        letters = {long: short for short, long in self.synonyms.items() if len(short) == 1}
        return formatHelp(
            self.longdesc,
            {**self.defaults, "port": DEFAULT_PORT},
            letters,
            width or int(os.environ.get("COLUMNS", "80")),
        )

    def postOptions(self) -> None:
        _exclusive(self, _VERBOSITY)
        _exclusive(self, [(name, text) for name, text, _ in _PREFERENCES])
        self["transferSyntaxes"] = next(
            (pref for name, _, pref in _PREFERENCES if self[name]),
            TransferSyntaxPreference.DEFAULT,
        )
        self["logLevelValue"] = _effectiveLevel(self)
        self["access"] = AccessList.build(self["allow-network"], self["allow-peer"])
        self["credentialsStore"] = _credentialsStore(self)
        self["endpoints"] = _endpointDescriptions(self)
        _checkEndpoints(self["endpoints"])
        if self["metrics"] is not None:
            try:
                import prometheus_client  # noqa: F401
            except ImportError:
                raise usage.UsageError(
                    "--metrics needs prometheus_client: pip install 'dicomecho[metrics]'"
                ) from None
            _checkEndpoints([self["metrics"]])


def _credentialsStore(options: Options) -> Any:
    """
    The credentials for user identity checks, loaded now so that a bad file
    stops the start; C{None} when identities are ignored.
    """
    mode, path = options["user-identity"], options["credentials"]
    if mode is UserIdentityMode.IGNORE:
        if path is not None:
            raise usage.UsageError(
                "--credentials needs --user-identity optional or required"
            )
        return None
    if path is None:
        raise usage.UsageError(f"--user-identity {mode.value} needs --credentials FILE")
    from dicomecho.security.credentials import CredentialsError, CredentialsStore

    try:
        return CredentialsStore(path)
    except CredentialsError as e:
        raise usage.UsageError(str(e)) from None


def _tlsDescription(options: Options, number: int, interface: str) -> str:
    """
    The C{dicomtls:} description the C{--tls-*} options ask for.
    """
    key, cert, ca = options["tls-key"], options["tls-cert"], options["tls-ca"]
    if not key or not cert:
        raise usage.UsageError("--tls-key and --tls-cert go together")
    clientCert = options["tls-client-cert"]
    if clientCert is not None and ca is None:
        raise usage.UsageError("--tls-client-cert needs --tls-ca")
    description = (
        f"dicomtls:{number}:interface={_escapeValue(interface)}"
        f":privateKey={_escapeValue(key)}:certKey={_escapeValue(cert)}"
    )
    if ca is not None:
        description += f":caCerts={_escapeValue(ca)}"
        required = "no" if clientCert == "optional" else "yes"
        description += f":requireClientCert={required}"
    return description


def _usesTLSOptions(options: Options) -> bool:
    return any(
        options[name] is not None
        for name in ("tls-key", "tls-cert", "tls-ca", "tls-client-cert")
    )


def _exclusive(options: Options, group: Sequence[tuple[str, str]]) -> None:
    given = [text for name, text in group if options[name]]
    if len(given) > 1:
        raise usage.UsageError(
            f"argument {given[1]}: not allowed with argument {given[0]}"
        )


def _effectiveLevel(options: Options) -> LogLevel | None:
    """
    echoscp: errors only by default, -v info, -d debug, -q nothing; -ll
    sets the level afterwards, except that -q leaves nothing to print.
    """
    if options["quiet"]:
        return None
    if options["log-level"] is not None:
        return options["log-level"]  # type: ignore[no-any-return]
    if options["debug"]:
        return LogLevel.debug
    if options["verbose"]:
        return LogLevel.info
    return LogLevel.error


def _endpointDescriptions(options: Options) -> list[str]:
    descriptions = list(options["listen"])
    if descriptions and not options._portGiven:
        return descriptions
    port = options["port"]
    if port.isdigit():
        number = int(port)
        if number > 65535:
            raise usage.UsageError(f"port {port} is not in the range 0-65535")
        bind = options["bind-address"]
        backlog = options["backlog"]
        if _usesTLSOptions(options):
            description = _tlsDescription(options, number, bind or "0.0.0.0")
        elif ":" in bind:
            description = f"tcp6:{number}:interface={_escapeValue(bind)}"
        elif bind:
            description = f"tcp:{number}:interface={_escapeValue(bind)}"
        else:
            # echoscp's default: all IPv4 interfaces.
            description = f"tcp:{number}:interface=0.0.0.0"
        description += f":backlog={backlog}"
    else:
        if options["bind-address"]:
            raise usage.UsageError(
                "--bind-address goes with a port number, not an endpoint "
                "description; put interface= in the description instead"
            )
        if _usesTLSOptions(options):
            raise usage.UsageError(
                "--tls-key/--tls-cert/--tls-ca go with a port number; with an "
                "endpoint description, use dicomtls:PORT:privateKey=...:certKey=..."
            )
        description = port
    return descriptions + [description]


def _checkEndpoints(descriptions: list[str]) -> None:
    """
    Parse every description now, so a mistake is a usage error and not a
    traceback at start-up. Parsing needs no real reactor.
    """
    from twisted.internet.testing import MemoryReactor

    from dicomecho.server.proxyheader import serverFromDescription

    for description in descriptions:
        try:
            serverFromDescription(MemoryReactor(), description)
        except (IndexError, KeyError) as e:
            if description.startswith("systemd:"):
                raise usage.UsageError(
                    f"{description!r}: no such socket was inherited from systemd "
                    f"(LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID must name it)"
                ) from None
            raise usage.UsageError(
                f"invalid endpoint description {description!r}: {e!r}"
            ) from None
        except Exception as e:
            raise usage.UsageError(
                f"invalid endpoint description {description!r}: "
                f"{type(e).__name__}: {e}"
            ) from None


class DICOMListeningService(StreamServerEndpointService):
    """
    Listens on one endpoint, logs the address it is bound to, and fails
    start-up (rather than logging and carrying on) if it cannot listen.

    The "listening" event is emitted once the reactor runs, i.e. once its
    SIGINT/SIGTERM handlers are installed, so whoever waits for that line
    may signal the process straight away.
    """

    _raiseSynchronously = True

    def __init__(self, endpoint: Any, factory: Any, description: str, reactor: Any) -> None:
        super().__init__(endpoint, factory)
        self.description = description
        self.port: IListeningPort | None = None
        self._reactor = reactor

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        assert self._waitingForPort is not None
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self._reactor.callWhenRunning(self._logListening, port)
        return port

    def _warnIfOpen(self, host: str, where: str) -> None:
        """
        Warn (at any level but quiet) when this port takes plain DICOM
        from beyond this host and no allow-list narrows who may use it.
        """
        address = peerAddress(host)
        if address is None or address.is_loopback:
            return
        if any(p in self.description for p in _TLS_PREFIXES):
            return
        if not self.factory.policy.access.empty:
            return
        log.warn(
            "Listening on {where} without TLS or an allow-list: any host that "
            "can reach it may associate (see 'Securing dicomecho' in README.rst)",
            dicomEvent="insecure-listener",
            dicomAlways=True,
            peer="",
            where=where,
            description=self.description,
        )

    def _logListening(self, port: IListeningPort) -> None:
        address = port.getHost()
        host = str(getattr(address, "host", None) or getattr(address, "name", ""))
        portNumber = getattr(address, "port", None)
        self._announce(address, host, portNumber, listeningAddress(host, portNumber))

    def _announce(self, address: Any, host: str, portNumber: int | None, where: str) -> None:
        """
        Say where this service listens (the C{listening} event), and warn
        if that is open to all.
        """
        log.info(
            "Listening on {description} ({where})",
            dicomEvent="listening",
            peer="",
            description=self.description,
            address=repr(address),
            host=host,
            port=portNumber,
            where=where,
        )
        if portNumber is not None:
            self._warnIfOpen(host, where)


class MetricsListeningService(DICOMListeningService):
    """
    Listens for Prometheus scrapes; says where once the reactor runs.
    """

    def _announce(self, address: Any, host: str, portNumber: int | None, where: str) -> None:
        log.info(
            "Serving metrics on {description} ({where})",
            dicomEvent="metrics-listening",
            peer="",
            description=self.description,
            host=host,
            port=portNumber,
            where=where,
        )


class ThreadPoolService(Service):
    """
    Runs a thread pool while the service runs.
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> Any:
        super().stopService()
        self.pool.stop()


class DICOMEchoService(MultiService):
    """
    The listening services of one factory. Stopping it stops listening at
    once, then drains the factory: established associations get the grace
    period to finish, the rest are aborted (L{DICOMServerFactory.drain}).
    """

    def __init__(self, factory: Any, grace: float, reactor: Any) -> None:
        super().__init__()
        self.factory = factory
        self.grace = grace
        self._reactor = reactor

    def stopService(self) -> Any:
        stopped = super().stopService()
        stopped.addCallback(lambda _: self.factory.drain(self.grace))
        stopped.addCallback(self._drained)
        return stopped

    def _drained(self, _: object) -> None:
        # twistd re-raises a SIGTERM/SIGINT after the reactor stops, so the
        # process would die by that signal. The shutdown it asked for has
        # completed in order, so report it as success (exit status 0).
        # _exitSignal is private reactor state, hence the guard.
        if getattr(self._reactor, "_exitSignal", None) is not None:
            self._reactor._exitSignal = None


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    A L{DICOMEchoService} of one listening service per endpoint, all
    sharing one L{DICOMServerFactory} (and so one association count).
    """
    from twisted.internet.endpoints import serverFromString

    from dicomecho.server.protocol import DICOMServerFactory
    from dicomecho.server.proxyheader import serverFromDescription

    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    setLogLevel(options["logLevelValue"])
    logStartup(__version__)
    checker, pool = None, None
    if options["credentialsStore"] is not None:
        from functools import partial

        from twisted.internet.threads import deferToThreadPool
        from twisted.python.threadpool import ThreadPool

        from dicomecho.security.identity import CredentialsChecker

        # scrypt takes ~16 MiB and tens of ms per check, with the GIL
        # released: a few threads of our own, off the reactor's pool.
        pool = ThreadPool(0, IDENTITY_THREADS, "dicomecho-identity")
        checker = CredentialsChecker(
            options["credentialsStore"], partial(deferToThreadPool, reactor, pool)
        )
    factory = DICOMServerFactory(
        options["ae-title"],
        requireCalledAETitle=bool(options["require-called-aet"]),
        allowedCallingAETitles=options["allow-calling-aet"],
        maxPDULength=options["max-pdu"],
        transferSyntaxes=options["transferSyntaxes"],
        acseTimeout=options["acse-timeout"],
        dimseTimeout=options["dimse-timeout"],
        networkTimeout=options["network-timeout"],
        maxAssociations=options["max-associations"],
        access=options["access"],
        userIdentity=options["user-identity"],
        identityChecker=checker,
        clock=reactor,
    )
    top = DICOMEchoService(factory, options["shutdown-grace"], reactor)
    if pool is not None:
        ThreadPoolService(pool).setServiceParent(top)
    for description in options["endpoints"]:
        # haproxy: descriptions get our PROXY layer, which takes a header
        # however TCP splits it (dicomecho.server.proxyheader).
        endpoint = serverFromDescription(reactor, description)
        DICOMListeningService(endpoint, factory, description, reactor).setServiceParent(top)
    if options["metrics"] is not None:
        from dicomecho.observability.metrics import metricsSite

        endpoint = serverFromString(reactor, options["metrics"])
        MetricsListeningService(
            endpoint, metricsSite(factory), options["metrics"], reactor
        ).setServiceParent(top)
    return top
