# -*- test-case-name: tests.test_tap -*-
"""
The twistd subcommand: L{Options} (echoscp's options, with pynetdicom's
spellings accepted) and L{makeService}.

Long option names are canonical. L{Options.parseOptions} also accepts
echoscp's single-dash multi-letter spellings (C{-aet}, C{-ta}, C{-td},
C{-tn}, C{-pdu}, C{-ba}, C{-ll}, C{-x=}, C{-xe}, C{-xb}, C{-xi}) so that a
command line copied from C{python -m pynetdicom echoscp} works.

Where to listen is L{dicomecho.server.listen}'s job, the services built
are L{dicomecho.server.services}'.

Importing this module does not import the reactor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorCore
from twisted.logger import LogLevel
from twisted.python import usage

from dicomecho import __version__
from dicomecho.association.negotiation import (
    DEFAULT_MAX_ASSOCIATIONS,
    DEFAULT_MAX_PDU_LENGTH,
    TransferSyntaxPreference,
)
from dicomecho.observability.history import DEFAULT_HISTORY, AssociationHistory
from dicomecho.observability.logs import logStartup
from dicomecho.observability.levels import setLogLevel
from dicomecho.security.access import AccessList, parseNetwork
from dicomecho.security.identity import UserIdentityMode
from dicomecho.server.commandline import (
    HELP_TEXT,
    formatHelp,
    permuteArguments,
    translateAliases,
    usageError,
)
from dicomecho.server.listen import TLSFiles, checkEndpoints, endpointDescriptions
from dicomecho.server.optionvalues import (
    clientCertificateMode,
    logLevelNamed,
    maxPDULength,
    associateLength,
    rate,
    wholeNumber,
    positiveNumber,
    seconds,
    userIdentityMode,
)
from dicomecho.server.pending import DEFAULT_MAX_PENDING
from dicomecho.server.services import (
    DICOMEchoService,
    DICOMListeningService,
    MetricsListeningService,
    WebListeningService,
    ThreadPoolService,
)
from dicomecho.security.sourcelimits import SourceLimitsPolicy
from dicomecho.wire.framer import DEFAULT_MAX_ASSOCIATE_LENGTH

_SOURCE_DEFAULTS = SourceLimitsPolicy()
from dicomecho.wire.pdu import validateAETitle

if TYPE_CHECKING:
    from dicomecho.security.credentials import CredentialsStore
    from dicomecho.server.identitycheck import CredentialsChecker

__all__ = ["Options", "makeService"]

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


class Options(usage.Options):
    """
    Options of C{twistd dicomecho} and C{python -m dicomecho}: echoscp's,
    in any order with the port (L{permuteArguments}), then ours.

    @ivar command: how the user ran us, for C{--help} and usage errors.
    @ivar portGiven: whether the port was given (C{--port} or the
        positional argument); if not, C{--listen} replaces it.
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

    optParameters: list[list[object]] = [
        ["log-level", None, None, HELP_TEXT["log-level"], logLevelNamed],
        ["ae-title", None, "ECHOSCP", HELP_TEXT["ae-title"], validateAETitle],
        ["acse-timeout", None, 30.0, HELP_TEXT["acse-timeout"], seconds],
        ["dimse-timeout", None, 30.0, HELP_TEXT["dimse-timeout"], seconds],
        ["network-timeout", None, 30.0, HELP_TEXT["network-timeout"], seconds],
        ["max-pdu", None, DEFAULT_MAX_PDU_LENGTH, HELP_TEXT["max-pdu"], maxPDULength],
        ["bind-address", None, "", HELP_TEXT["bind-address"]],
        ["max-associations", None, DEFAULT_MAX_ASSOCIATIONS, HELP_TEXT["max-associations"], positiveNumber],
        ["max-associate-length", None, DEFAULT_MAX_ASSOCIATE_LENGTH,
         HELP_TEXT["max-associate-length"], associateLength],
        ["max-pending", None, DEFAULT_MAX_PENDING, HELP_TEXT["max-pending"], wholeNumber],
        ["max-pending-per-source", None, _SOURCE_DEFAULTS.maxPending,
         HELP_TEXT["max-pending-per-source"], wholeNumber],
        ["max-associations-per-source", None, _SOURCE_DEFAULTS.maxAssociations,
         HELP_TEXT["max-associations-per-source"], wholeNumber],
        ["connection-rate-per-source", None, _SOURCE_DEFAULTS.connectionRate,
         HELP_TEXT["connection-rate-per-source"], rate],
        ["request-bytes-per-source", None, _SOURCE_DEFAULTS.requestBytesPerSecond,
         HELP_TEXT["request-bytes-per-source"], rate],
        ["tls-handshakes-per-source", None, _SOURCE_DEFAULTS.handshakeRate,
         HELP_TEXT["tls-handshakes-per-source"], rate],
        ["backlog", None, DEFAULT_BACKLOG, HELP_TEXT["backlog"], positiveNumber],
        ["shutdown-grace", None, DEFAULT_SHUTDOWN_GRACE, HELP_TEXT["shutdown-grace"], seconds],
        ["user-identity", None, UserIdentityMode.IGNORE, HELP_TEXT["user-identity"], userIdentityMode],
        ["credentials", None, None, HELP_TEXT["credentials"]],
        ["tls-key", None, None, HELP_TEXT["tls-key"]],
        ["tls-cert", None, None, HELP_TEXT["tls-cert"]],
        ["tls-ca", None, None, HELP_TEXT["tls-ca"]],
        ["tls-client-cert", None, None, HELP_TEXT["tls-client-cert"], clientCertificateMode],
        ["metrics", None, None, HELP_TEXT["metrics"]],
        ["web", None, None, HELP_TEXT["web"]],
        ["web-history", None, DEFAULT_HISTORY, HELP_TEXT["web-history"], positiveNumber],
        ["web-credentials", None, None, HELP_TEXT["web-credentials"]],
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
        self.portGiven = False

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
        self.portGiven = True

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
        self["credentialsStore"] = _credentialsStore(self["user-identity"], self["credentials"])
        tls = TLSFiles(self["tls-key"], self["tls-cert"], self["tls-ca"], self["tls-client-cert"])
        self["endpoints"] = endpointDescriptions(
            self["listen"], self.portGiven, self["port"], self["bind-address"], self["backlog"], tls
        )
        checkEndpoints(self["endpoints"])
        if self["metrics"] is not None:
            try:
                import prometheus_client  # noqa: F401
            except ImportError:
                raise usage.UsageError(
                    "--metrics needs prometheus_client: pip install 'dicomecho[metrics]'"
                ) from None
            checkEndpoints([self["metrics"]])
        self["webCredentialsStore"] = _webCredentials(self["web"], self["web-credentials"])
        if self["web"] is not None:
            checkEndpoints([self["web"]])


def _webCredentials(web: str | None, path: str | None) -> CredentialsStore | None:
    """The live page's credentials, loaded now so that a bad file stops the start."""
    from dicomecho.security.credentials import CredentialsError, CredentialsStore

    if path is None:
        return None
    if web is None:
        raise usage.UsageError("--web-credentials needs --web ENDPOINT")
    try:
        return CredentialsStore(path)
    except CredentialsError as error:
        raise usage.UsageError(f"--web-credentials: {error}") from None


def _credentialsStore(mode: UserIdentityMode, path: str | None) -> CredentialsStore | None:
    """
    The credentials for user identity checks, loaded now so that a bad file
    stops the start; C{None} when identities are ignored.
    """
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


def _identityChecker(
    store: CredentialsStore, reactor: IReactorCore
) -> tuple[CredentialsChecker, ThreadPoolService]:
    """
    The checker of user identities against C{store}, and the service
    running its threads: scrypt takes ~16 MiB and tens of ms per check,
    with the GIL released, so a few threads of our own, off the reactor's
    pool.
    """
    from functools import partial

    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    from dicomecho.server.identitycheck import CredentialsChecker

    pool = ThreadPool(0, IDENTITY_THREADS, "dicomecho-identity")
    checker = CredentialsChecker(store, partial(deferToThreadPool, reactor, pool))
    return checker, ThreadPoolService(pool)


def _sourceLimits(options: Options) -> SourceLimitsPolicy:
    """
    The per-source limits the options set (bursts of twice the rate).
    """
    rate = options["connection-rate-per-source"]
    return SourceLimitsPolicy(
        maxPending=options["max-pending-per-source"],
        maxAssociations=options["max-associations-per-source"],
        connectionRate=rate,
        connectionBurst=max(1, int(2 * rate)),
        requestBytesPerSecond=options["request-bytes-per-source"],
        requestBytesBurst=max(1, int(4 * options["request-bytes-per-source"])),
        handshakeRate=options["tls-handshakes-per-source"],
        handshakeBurst=max(1, int(2 * options["tls-handshakes-per-source"])),
    )


def makeService(options: Options, reactor: IReactorCore | None = None) -> IService:
    """
    A L{DICOMEchoService} of one listening service per endpoint, all
    sharing one L{DICOMServerFactory} (and so one association count).

    @param reactor: the reactor to listen with; by default, the global one.
    """

    from dicomecho.server.factory import DICOMServerFactory
    from dicomecho.server.filelimit import noteDescriptorLimit
    from dicomecho.server.proxyheader import serverFromDescription

    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    setLogLevel(options["logLevelValue"])
    logStartup(__version__)
    noteDescriptorLimit(options["max-associations"], options["max-pending"])
    checker, threads = None, None
    if options["credentialsStore"] is not None:
        checker, threads = _identityChecker(options["credentialsStore"], reactor)
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
        maxAssociateLength=options["max-associate-length"],
        sourceLimits=_sourceLimits(options),
        maxPending=options["max-pending"],
        access=options["access"],
        userIdentity=options["user-identity"],
        identityChecker=checker,
        clock=reactor,
        history=AssociationHistory(options["web-history"]) if options["web"] else None,
    )
    top = DICOMEchoService(factory, options["shutdown-grace"], reactor)
    if threads is not None:
        threads.setServiceParent(top)
    for description in options["endpoints"]:
        # haproxy: descriptions get our PROXY layer, which takes a header
        # however TCP splits it (dicomecho.server.proxyheader).
        endpoint = serverFromDescription(reactor, description)
        DICOMListeningService(endpoint, factory, description, reactor).setServiceParent(top)
    _addPages(options, factory, reactor, top)
    return top


def _addPages(options: Options, factory: Any, reactor: IReactorCore, top: IService) -> None:
    """The HTTP services: Prometheus metrics (--metrics), the live page (--web)."""
    from twisted.internet.endpoints import serverFromString

    if options["metrics"] is not None:
        from dicomecho.observability.metrics import metricsSite

        endpoint = serverFromString(reactor, options["metrics"])
        MetricsListeningService(
            endpoint, metricsSite(factory), options["metrics"], reactor
        ).setServiceParent(top)  # type: ignore[arg-type]
    if options["web"] is not None:
        from dicomecho.web.site import liveSite

        site = liveSite(factory, options["webCredentialsStore"], reactor)
        endpoint = serverFromString(reactor, options["web"])
        web = WebListeningService(endpoint, site, options["web"], reactor)
        web.authenticated = options["webCredentialsStore"] is not None
        web.setServiceParent(top)  # type: ignore[arg-type]
