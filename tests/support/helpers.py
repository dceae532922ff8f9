"""
Shared helpers: captured fixtures and a whole-stream splitter.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from twisted.logger import LogLevel

from dicomecho.wire.framer import Frame, PDUFramer
from dicomecho.observability.levels import logLevel, setLogLevel

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

#: Every captured session; see fixtures/README.rst for how each was made.
SESSIONS = (
    "dcmtk_echoscu_default",
    "dcmtk_echoscu_propose_ts",
    "dcmtk_echoscu_propose_pc",
    "dcmtk_echoscu_maxpdu",
    "dcmtk_echoscu_abort",
    "pynetdicom_echoscu_default",
    "pynetdicom_extended",
)


def fixtureBytes(session: str, direction: str) -> bytes:
    """
    The bytes one side sent in a captured session.

    @param direction: C{"c2s"} (the SCU's requests) or C{"s2c"} (the SCP's).
    """
    return (FIXTURES / f"{session}.{direction}.bin").read_bytes()


def splitStream(data: bytes, **framerOptions: int) -> list[Frame]:
    """
    Split a whole byte stream into frames, asserting nothing is left over.
    """
    framer = PDUFramer(**framerOptions)
    framer.receiveData(data)
    frames = []
    while (frame := framer.nextFrame()) is not None:
        frames.append(frame)
    assert framer.bufferedLength == 0
    return frames


@contextmanager
def logLevelSet(level: LogLevel | None) -> Iterator[None]:
    """
    dicomecho's log level set to C{level} for the block, restored after.
    """
    before = logLevel()
    setLogLevel(level)
    try:
        yield
    finally:
        setLogLevel(before)
