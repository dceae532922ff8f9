# -*- test-case-name: tests.test_tap -*-
"""
The values of dicomecho's options, from the text on the command line:
each function returns the value or raises L{ValueError} saying which
values are allowed (L{twisted.python.usage} makes that a usage error).
"""

from __future__ import annotations

from twisted.logger import LogLevel

from dicomecho.association.negotiation import MINIMUM_PEER_MAX_PDU_LENGTH
from dicomecho.observability.levels import LOG_LEVEL_NAMES
from dicomecho.security.identity import UserIdentityMode
from dicomecho.wire.framer import MAX_ASSOCIATE_LENGTH_CEILING

__all__ = [
    "seconds",
    "maxPDULength",
    "associateLength",
    "positiveNumber",
    "wholeNumber",
    "rate",
    "logLevelNamed",
    "userIdentityMode",
    "clientCertificateMode",
]


def seconds(value: str) -> float:
    """
    A number of seconds, C{>= 0} (C{-ta}, C{--shutdown-grace} ...).
    """
    number = float(value)
    if not number >= 0:  # also refuses NaN
        raise ValueError(f"{value!r} is not a number of seconds >= 0")
    return number


def maxPDULength(value: str) -> int:
    """
    C{-pdu}: 0 (unlimited), or a maximum PDU length a peer may be told
    (PS3.8 Annex D.1).
    """
    size = int(value)
    if size != 0 and not MINIMUM_PEER_MAX_PDU_LENGTH <= size <= 0xFFFFFFFF:
        raise ValueError(
            f"{value} is not 0 (unlimited) or a size from "
            f"{MINIMUM_PEER_MAX_PDU_LENGTH} to {0xFFFFFFFF}"
        )
    return size


def associateLength(value: str) -> int:
    """
    C{--max-associate-length}: the longest A-ASSOCIATE-RQ accepted, in bytes
    after the PDU header.
    """
    size = int(value)
    if not 1024 <= size <= MAX_ASSOCIATE_LENGTH_CEILING:
        raise ValueError(f"{value} is not a size from 1024 to {MAX_ASSOCIATE_LENGTH_CEILING}")
    return size


def positiveNumber(value: str) -> int:
    """
    A whole number C{>= 1} (C{--max-associations}, C{--backlog}).
    """
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a whole number >= 1")
    return number


def wholeNumber(value: str) -> int:
    """
    A whole number C{>= 0}, 0 meaning no limit (the per-source limits).
    """
    number = int(value)
    if number < 0:
        raise ValueError(f"{value} is not a whole number >= 0 (0: no limit)")
    return number


def rate(value: str) -> float:
    """
    A number of events per second, C{>= 0}, 0 meaning no limit.
    """
    number = float(value)
    if not number >= 0:  # also refuses NaN
        raise ValueError(f"{value!r} is not a rate >= 0 per second (0: no limit)")
    return number


def logLevelNamed(value: str) -> LogLevel:
    """
    C{-ll}: one of echoscp's level names, in any case.
    """
    try:
        return LOG_LEVEL_NAMES[value.lower()]
    except KeyError:
        raise ValueError(
            f"{value!r} is not one of {', '.join(LOG_LEVEL_NAMES)}"
        ) from None


def userIdentityMode(value: str) -> UserIdentityMode:
    """
    C{--user-identity}: a L{UserIdentityMode} by its value, in any case.
    """
    try:
        return UserIdentityMode(value.lower())
    except ValueError:
        raise ValueError(
            f"{value!r} is not one of {', '.join(m.value for m in UserIdentityMode)}"
        ) from None


def clientCertificateMode(value: str) -> str:
    """
    C{--tls-client-cert}: C{required} or C{optional}.
    """
    if value not in ("required", "optional"):
        raise ValueError(f"{value!r} is not 'required' or 'optional'")
    return value
