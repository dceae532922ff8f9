# -*- test-case-name: tests.test_association -*-
"""
Responses go out in the order their requests came in, even when a
responder answers later than the ones after it.
"""

from __future__ import annotations

from collections import deque
from typing import Iterator

__all__ = ["Slot", "ResponseQueue"]

#: One response's place in the queue: a list holding its encoded PDUs once
#: they are ready, C{None} until then.
Slot = list[list[bytes] | None]


class ResponseQueue:
    """
    Responses not yet sent, in request order.

    The deque is made only when a responder answers later (it is some 600
    bytes, and most associations never need one).
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: deque[Slot] | tuple[()] = ()

    def __bool__(self) -> bool:
        return bool(self._pending)

    def reserve(self) -> Slot:
        """
        A place for a response that comes later.
        """
        slot: Slot = [None]
        if not self._pending:
            self._pending = deque()
        self._pending.append(slot)  # type: ignore[union-attr]
        return slot

    def add(self, pdus: list[bytes]) -> None:
        """
        A response ready now, behind those still waiting.
        """
        self.reserve()[0] = pdus

    def ready(self) -> Iterator[list[bytes]]:
        """
        Take the responses at the head of the queue that are ready, in
        order, up to the first that is not.
        """
        pending = self._pending
        while pending and pending[0][0] is not None:
            yield pending.popleft()[0]  # type: ignore[union-attr,misc]

    def clear(self) -> None:
        """
        Forget every pending response (the association was aborted).
        """
        self._pending = ()
