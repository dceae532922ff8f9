# -*- test-case-name: tests.test_reuseport -*-
"""
Argument checks shared by dicomecho's endpoint description parsers
(C{dicomtls:}, C{reuseport:}). Errors name the description's prefix and
the argument, so a mistake in C{--listen} reads as a usage error.
"""

from __future__ import annotations

from typing import Iterable, Mapping

__all__ = ["checkArguments", "numberArgument"]


def checkArguments(prefix: str, given: Mapping[str, str], known: Iterable[str]) -> None:
    """
    @raise ValueError: if C{given} has an argument not in C{known}.
    """
    known = tuple(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(
            f"{prefix}: unknown argument {unknown[0]!r}; known: {', '.join(known)}"
        )


def numberArgument(prefix: str, name: str, value: str, low: int, high: int) -> int:
    """
    C{value} as a whole number from C{low} to C{high}.

    @raise ValueError: if it is not one.
    """
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ValueError(f"{prefix}: {name}={value!r} is not a number from {low} to {high}")
    return number
