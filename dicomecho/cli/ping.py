# -*- test-case-name: tests.test_ping -*-
"""
A DICOM health check: one association, one C-ECHO, one release.

C{python -m dicomecho.ping HOST PORT [options]} proposes the Verification
SOP Class, sends a C-ECHO-RQ and releases the association (PS3.7 §9.1.5,
PS3.8 §7.1-7.2). It prints nothing when the echo succeeds (one line with
C{-v}) and one line on standard error saying why when it does not, so it
serves as a Kubernetes exec readiness probe or an HAProxy external check
on hosts without DCMTK.

Exit status:

  - 0: the C-ECHO-RSP carried status 0x0000 (Success).
  - 1: the association was rejected (A-ASSOCIATE-RJ, PS3.8 §9.3.4); the
    line gives result, source and reason in words.
  - 2: usage error.
  - 3: cannot connect: DNS failure, connection refused, unreachable, or
    the TLS handshake failed (including a client certificate the server
    refused).
  - 4: the overall deadline (C{-t}) passed; the line names the phase:
    connect, TLS handshake, association, C-ECHO or release. Once the
    association request has been sent, an A-ABORT is sent before closing.
  - 5: protocol failure: the peer aborted (A-ABORT source and reason in
    words) or closed the connection, no presentation context was accepted
    for Verification, a PDU was unexpected or malformed, or the
    C-ECHO-RSP is wrong or carries a non-zero status (PS3.7 §9.1.5.1.4).
    Also used, with C{internal error} in the line, if the probe itself
    fails unexpectedly: never 1, which would read as a rejection.

C{--proxy-header} starts the connection with a PROXY protocol v2 LOCAL
header, for a server that listens behind a load balancer (C{haproxy:}
endpoints), as the balancer's own health checks do.

This module is the command line: options, the one output line, the exit
status. L{dicomecho.cli.pingassociation.ping} runs the exchange (in-process
too, returning a L{dicomecho.cli.pingresult.PingResult}) over the
connection L{dicomecho.cli.pingconnection} opens: blocking sockets with
timeouts taken from one deadline and dicomecho's pure wire layers only, no
reactor, no Twisted, no pynetdicom.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from typing import NoReturn, Sequence

from dicomecho import __version__
from dicomecho.cli.pingassociation import (
    DEFAULT_CALLED_AET,
    DEFAULT_CALLING_AET,
    DEFAULT_TIMEOUT,
    makeUserIdentity,
    ping,
)
from dicomecho.cli.pingconnection import makeSSLContext
from dicomecho.cli.pingresult import ExitCode
from dicomecho.observability.logblocks import escape
from dicomecho.wire.pdu import validateAETitle

__all__ = ["PROG", "main"]

PROG = "python -m dicomecho.ping"

_EPILOG = """\
exit status:
  0  C-ECHO succeeded (status 0x0000)
  1  association rejected (result, source and reason in words)
  2  usage error
  3  cannot connect: DNS failure, connection refused, TLS handshake failed,
     client certificate refused
  4  timeout (-t covers everything; the message names the phase: connect,
     TLS handshake, association, C-ECHO, release)
  5  protocol failure: aborted by the peer, connection closed, no presentation
     context accepted, unexpected or malformed PDU, C-ECHO-RSP with a
     non-zero status or for another message

On failure one line on standard error says why; on success nothing is
printed (one line on standard output with -v). The passcode of --user is
read from the environment variable named by --passcode-env, never from the
command line.
"""


class _Parser(argparse.ArgumentParser):
    """
    argparse, with a usage error on one line.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _port(value: str) -> int:
    try:
        port = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} is not between 1 and 65535")
    return port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {value!r}") from None
    if not 0 < seconds < 86400:
        raise argparse.ArgumentTypeError(f"timeout {value} must be above 0 (and below a day)")
    return seconds


def _aeTitleArgument(value: str) -> str:
    try:
        return validateAETitle(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _makeParser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Check a DICOM service: associate, send one C-ECHO (Verification),\n"
            "release. Silent on success."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("host", help="host name or address of the peer")
    parser.add_argument("port", type=_port, help="TCP port of the peer")
    parser.add_argument(
        "-aet", "--calling-aet", type=_aeTitleArgument, default=DEFAULT_CALLING_AET,
        metavar="AET", help=f"our AE title (default: {DEFAULT_CALLING_AET})",
    )
    parser.add_argument(
        "-aec", "--called-aet", type=_aeTitleArgument, default=DEFAULT_CALLED_AET,
        metavar="AET", help=f"the peer's AE title (default: {DEFAULT_CALLED_AET})",
    )
    parser.add_argument(
        "-t", "--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=(
            "deadline for everything: DNS, connect, TLS handshake, association, "
            f"C-ECHO and release (default: {DEFAULT_TIMEOUT:g})"
        ),
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print one line on success too"
    )
    parser.add_argument(
        "--proxy-header", action="store_true",
        help=(
            "start with a PROXY protocol v2 LOCAL header, as a load balancer's "
            "own health check does (for a server listening on haproxy:)"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _addTLSArguments(parser)
    _addIdentityArguments(parser)
    return parser


def _addTLSArguments(parser: _Parser) -> None:
    """
    The TLS options (PS3.15 B.12).
    """
    tls = parser.add_argument_group("TLS (DICOM TLS, PS3.15 B.12; TLS 1.2 or later)")
    tls.add_argument(
        "--tls", action="store_true",
        help="use TLS; the server is verified against the system's CAs or --tls-ca",
    )
    tls.add_argument(
        "--tls-ca", metavar="FILE", help="PEM file of the CAs to verify the server with (implies --tls)"
    )
    tls.add_argument(
        "--tls-cert", metavar="FILE",
        help="PEM certificate (then any chain) to present, for mutual TLS; needs --tls-key (implies --tls)",
    )
    tls.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    tls.add_argument(
        "--tls-server-name", metavar="NAME",
        help="the name to send (SNI) and check the server certificate against (default: HOST)",
    )
    tls.add_argument(
        "--tls-no-verify-host", action="store_true",
        help="do not check the server certificate's name (it is still verified against the CAs)",
    )


def _addIdentityArguments(parser: _Parser) -> None:
    """
    The user identity options (PS3.7 D.3.3.7).
    """
    identity = parser.add_argument_group("user identity (PS3.7 D.3.3.7)")
    identity.add_argument(
        "--user", metavar="NAME",
        help="send this username: type 1 alone, type 2 with --passcode-env",
    )
    identity.add_argument(
        "--passcode-env", metavar="VAR",
        help="read the passcode for --user from environment variable VAR",
    )


def _contextFromArguments(parser: _Parser, args: argparse.Namespace) -> ssl.SSLContext | None:
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    useTLS = args.tls or args.tls_ca is not None or args.tls_cert is not None
    if not useTLS:
        if args.tls_server_name is not None or args.tls_no_verify_host:
            parser.error("--tls-server-name and --tls-no-verify-host need --tls")
        return None
    try:
        return makeSSLContext(
            args.tls_ca, args.tls_cert, args.tls_key, checkHostname=not args.tls_no_verify_host
        )
    except (OSError, ssl.SSLError) as e:
        what = getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e)
        parser.error(f"cannot load the TLS files: {what}")


def _passcodeFromArguments(parser: _Parser, args: argparse.Namespace) -> str | None:
    if args.passcode_env is None:
        return None
    if args.user is None:
        parser.error("--passcode-env needs --user")
    passcode = os.environ.get(args.passcode_env)
    if passcode is None:
        parser.error(f"environment variable {args.passcode_env} (--passcode-env) is not set")
    if not passcode:
        parser.error(f"environment variable {args.passcode_env} (--passcode-env) is empty")
    return passcode


def _target(host: str, port: int) -> str:
    shown = escape(host)
    return f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    """
    The command line: parse C{argv} (default: C{sys.argv[1:]}), ping, report.

    @return: the exit status, an L{ExitCode}.
    """
    parser = _makeParser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
        sslContext = _contextFromArguments(parser, args)
        passcode = _passcodeFromArguments(parser, args)
        if args.user is not None:
            try:
                makeUserIdentity(args.user, passcode)
            except ValueError as e:
                parser.error(str(e))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else ExitCode.USAGE
    target = _target(args.host, args.port)
    try:
        result = ping(
            args.host,
            args.port,
            callingAETitle=args.calling_aet,
            calledAETitle=args.called_aet,
            timeout=args.timeout,
            sslContext=sslContext,
            serverHostname=args.tls_server_name,
            user=args.user,
            passcode=passcode,
            proxyHeader=args.proxy_header,
        )
    except Exception as e:  # a bug: still one line, and not "rejected"
        print(f"{target}: internal error: {e.__class__.__name__}: {e}", file=sys.stderr)
        return ExitCode.PROTOCOL
    if result.ok:
        if args.verbose:
            over = f" over {result.tlsVersion}" if result.tlsVersion else ""
            print(
                f"{target}: C-ECHO to {args.called_aet} succeeded{over} in "
                f"{result.elapsed * 1000:.1f} ms"
            )
        return ExitCode.OK
    print(f"{target}: {result.message}", file=sys.stderr)
    return result.exitCode


if __name__ == "__main__":
    sys.exit(main())
