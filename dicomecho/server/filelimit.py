# -*- test-case-name: tests.test_sourcelimits -*-
"""
The descriptor limit, at start-up: each connection is a file descriptor,
and under a soft limit of 1,024 (systemd's default) one source opening a
thousand silent connections would leave none for anybody else. The soft
limit is raised to the hard one, the limit in effect is logged, and a
warning says when it cannot hold the associations allowed plus room for
connections not yet associated.
"""

from __future__ import annotations

import resource

from dicomecho.observability.events import emitDescriptorLimit

__all__ = ["raiseDescriptorLimit", "noteDescriptorLimit"]

#: Descriptors for listeners, logs and the like.
_OWN_USE = 64


def raiseDescriptorLimit() -> tuple[int, int]:
    """
    Raise the soft C{RLIMIT_NOFILE} to the hard one (when the hard one is
    unlimited, to 1,048,576); the (soft, hard) limits in effect.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        return soft, hard
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def noteDescriptorLimit(maxAssociations: int, maxPending: int) -> int:
    """
    Raise the limit; log it (debug), and warn (at any level but quiet) if
    it cannot hold C{maxAssociations} plus C{maxPending} connections not yet
    associated (and a few for the process itself). The soft limit in effect.
    """
    soft, hard = raiseDescriptorLimit()
    needed = maxAssociations + maxPending + _OWN_USE
    emitDescriptorLimit(soft, hard, needed, maxAssociations)
    return soft
