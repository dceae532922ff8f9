"""
What an A-ASSOCIATE-RQ costs the server before there is an association:
decoding it and negotiating an answer (the work a peer can make us do
without being accepted). Each request is the largest of its shape that the
default caps admit, built to be as dear as possible per byte.

Usage::

    .venv/bin/python -m benchmarks.requestcost [--repeat 20] [--json PATH]

It prints, per request shape, the bytes, the least CPU time over
C{--repeat} runs (ms), the time per byte (ns) and the ratio per byte to
DCMTK's largest request (C{echoscu -ppc 128 -pts 38}, captured in
tests/fixtures), and checks issue 15's target: no admitted request costs
more than 5 ms.

Shapes:
 - C{dcmtk-largest}: DCMTK echoscu, 128 contexts x 38 transfer syntaxes.
 - C{unknown-items}: empty items of an unknown type (PS3.8 §9.3.1 says to
   skip them), up to the cap.
 - C{tiny-transfer-syntaxes}: 128 contexts, each with 1-character transfer
   syntax sub-items, up to the cap.
 - C{unknown-sub-items}: 128 contexts, each with empty unknown sub-items.
 - C{user-info-sub-items}: one User Information item (capped at 64 KiB by
   its 16-bit length) of empty unknown sub-items, plus unknown items after
   it up to the cap.
 - C{role-selections}: role selection sub-items (PS3.7 D.3.3.4), as many as
   fit.
 - C{contexts-beyond-128}: empty presentation context items, as many as
   fit (PS3.8 allows 128).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path
from typing import Callable

from dicomecho.association.negotiation import (
    AssociationPolicy,
    InvalidAssociateRequest,
    negotiate,
)
from dicomecho.wire.errors import RemoteProtocolError
from dicomecho.wire.framer import DEFAULT_MAX_ASSOCIATE_LENGTH, HEADER_LENGTH
from dicomecho.wire.itemcodec import MAX_ITEMS
from dicomecho.wire.pdu import decodePDU

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "dcmtk_echoscu_ppc128_pts38.rq.bin"

#: Issue 15's bound on the CPU of any request the defaults admit.
TARGET_MS = 5.0

_VERIFICATION = b"1.2.840.10008.1.1"
_IMPLICIT = b"1.2.840.10008.1.2"
_APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"


def _item(itemType: int, body: bytes) -> bytes:
    return struct.pack(">BBH", itemType, 0, len(body)) + body


def _fixed() -> bytes:
    """
    The fixed part of an A-ASSOCIATE-RQ body (PS3.8 Table 9-11).
    """
    return struct.pack(">HH16s16s32s", 1, 0, b"ECHOSCP".ljust(16), b"SCU".ljust(16), bytes(32))


def _userInformation(extra: bytes = b"") -> bytes:
    return _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3") + extra)


def _context(contextID: int, subItems: bytes) -> bytes:
    return _item(0x20, bytes((contextID, 0, 0, 0)) + _item(0x30, _VERIFICATION) + subItems)


def _fill(head: bytes, tail: bytes, unit: bytes, cap: int, count: int) -> bytes:
    """
    C{head}, then C{count} C{unit}s or as many as fit in C{cap} with
    C{tail}, then C{tail}.
    """
    room = (cap - len(head) - len(tail)) // len(unit)
    return head + unit * max(0, min(room, count)) + tail


#: Items in the head and tail the shapes share (application context, one
#: context with two sub-items, user information with two sub-items).
_BASE_ITEMS = 7


def unknownItems(cap: int, items: int) -> bytes:
    head = _fixed() + _item(0x10, _APPLICATION_CONTEXT) + _context(1, _item(0x40, _IMPLICIT))
    return _fill(head, _userInformation(), _item(0x99, b""), cap, items - _BASE_ITEMS)


def _perContext(cap: int, unit: bytes, items: int) -> bytes:
    head = _fixed() + _item(0x10, _APPLICATION_CONTEXT)
    tail = _userInformation()
    contexts = 128
    per = min((cap - len(head) - len(tail)) // contexts - 60, 0xFFFF - 64) // len(unit)
    per = max(0, min(per, (items - 4 - 3 * contexts) // contexts))
    body = b"".join(
        _context(2 * index + 1, _item(0x40, _IMPLICIT) + unit * per) for index in range(contexts)
    )
    return head + body + tail


def tinyTransferSyntaxes(cap: int, items: int) -> bytes:
    return _perContext(cap, _item(0x40, b"1"), items)


def unknownSubItems(cap: int, items: int) -> bytes:
    return _perContext(cap, _item(0x99, b""), items)


def userInfoSubItems(cap: int, items: int) -> bytes:
    head = _fixed() + _item(0x10, _APPLICATION_CONTEXT) + _context(1, _item(0x40, _IMPLICIT))
    sub = _item(0x99, b"")
    count = min((0xFFFF - 64) // len(sub), items - _BASE_ITEMS)
    return head + _userInformation(sub * count)


def roleSelections(cap: int, items: int) -> bytes:
    """
    One role selection per possible context (128), then unknown items.
    """
    head = _fixed() + _item(0x10, _APPLICATION_CONTEXT) + _context(1, _item(0x40, _IMPLICIT))
    roles = b"".join(
        _item(0x54, struct.pack(">H", len(uid)) + uid + b"\x01\x01")
        for uid in (f"1.2.840.10008.5.1.4.1.1.{n}".encode() for n in range(128))
    )
    return _fill(head + _userInformation(roles), b"", _item(0x99, b""), cap,
                 items - _BASE_ITEMS - 128)


def contextsBeyond128(cap: int, items: int) -> bytes:
    head = _fixed() + _item(0x10, _APPLICATION_CONTEXT)
    return _fill(head, _userInformation(), _item(0x20, bytes((1, 0, 0, 0))), cap, items)


def unknownItemsBeyondBudget(cap: int, items: int) -> bytes:
    return unknownItems(cap, cap)


def dcmtkLargest(cap: int, items: int) -> bytes:
    data = FIXTURE.read_bytes()
    return data[HEADER_LENGTH:]


SHAPES: dict[str, Callable[[int, int], bytes]] = {
    "dcmtk-largest": dcmtkLargest,
    "unknown-items": unknownItems,
    "tiny-transfer-syntaxes": tinyTransferSyntaxes,
    "unknown-sub-items": unknownSubItems,
    "user-info-sub-items": userInfoSubItems,
    "role-selections": roleSelections,
    "contexts-beyond-128": contextsBeyond128,
    "unknown-items-beyond-budget": unknownItemsBeyondBudget,
}


def serverWork(body: bytes, policy: AssociationPolicy) -> str:
    """
    What the server does with an A-ASSOCIATE-RQ body before an association
    exists: decode it and negotiate (encoding the AC when accepted). The
    outcome, in a word.
    """
    try:
        rq = decodePDU(1, body)
        outcome = negotiate(rq, policy)
    except (RemoteProtocolError, InvalidAssociateRequest) as error:
        return f"refused ({type(error).__name__})"
    ac = getattr(outcome, "ac", None)
    if ac is not None:
        ac.encode()
        return "accepted"
    return "rejected"


def measure(body: bytes, repeat: int, policy: AssociationPolicy) -> tuple[float, str]:
    best = float("inf")
    outcome = ""
    for _ in range(repeat):
        start = time.process_time()
        outcome = serverWork(body, policy)
        best = min(best, time.process_time() - start)
    return best, outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.requestcost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--cap", type=int, default=DEFAULT_MAX_ASSOCIATE_LENGTH,
                        help="the A-ASSOCIATE-RQ length admitted (default: the server's)")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args(argv)
    policy = AssociationPolicy(aeTitle="ECHOSCP")
    rows = []
    reference: float | None = None
    for name, build in SHAPES.items():
        body = build(options.cap, MAX_ITEMS)
        if len(body) > options.cap:
            print(f"{name}: {len(body)} bytes, above the cap; not admitted", file=sys.stderr)
            continue
        seconds, outcome = measure(body, options.repeat, policy)
        perByte = seconds / len(body) * 1e9
        if reference is None:
            reference = perByte
        rows.append({"shape": name, "bytes": len(body), "ms": round(seconds * 1e3, 3),
                     "nsPerByte": round(perByte, 2), "vsDCMTK": round(perByte / reference, 2),
                     "outcome": outcome})
    print(f"{'shape':24} {'bytes':>8} {'ms':>8} {'ns/B':>7} {'x DCMTK/B':>9}  outcome")
    for row in rows:
        print(f"{row['shape']:24} {row['bytes']:>8} {row['ms']:>8.3f} {row['nsPerByte']:>7.2f} "
              f"{row['vsDCMTK']:>9.2f}  {row['outcome']}")
    worst = max(row["ms"] for row in rows)
    verdict = "PASS" if worst <= TARGET_MS else "FAIL"
    print(f"dearest request, admitted or refused: {worst:.3f} ms (target <= {TARGET_MS} ms) "
          f"{verdict}")
    if options.json:
        options.json.write_text(json.dumps({"cap": options.cap, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
