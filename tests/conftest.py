"""
Hypothesis profiles: C{ci} (selected when CI=true) is derandomized so a CI
run is reproducible; C{dev} explores new examples every run.

Fixtures shared by the protocol-level tests: C{clock} (a Clock that must be
left with no DelayedCall) and C{events} (every log event, at debug level).
"""

import os
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, settings
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher

from tests.support.helpers import logLevelSet

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


@pytest.fixture
def clock() -> Iterator[Clock]:
    c = Clock()
    yield c
    assert c.getDelayedCalls() == [], "a DelayedCall was left behind"


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    with logLevelSet(LogLevel.debug):
        yield seen
    globalLogPublisher.removeObserver(seen.append)
