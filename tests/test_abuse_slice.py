"""
A short slice of L{benchmarks.abuse} in CI (issue 15): each attack for a
couple of seconds against a real server. It checks what must hold whatever
the machine: the normal SCU (another source) gets every association it
asks for, and the attacker's refusals are logged, once per source and
limit, naming the limit. Never timings: those are the benchmark's.
"""

from __future__ import annotations

import re
import shutil
import tempfile

import pytest

from benchmarks import abuse
from benchmarks._common import raiseFileLimit

#: The limit each attack must run into, as its log line names it; None
#: where the attack may stay within every limit (a connect/close flood of
#: four clients stays under the rate limit on a slow machine).
EXPECTED_LIMIT = {
    "big-requests": "--request-bytes-per-source",
    "silent": "--max-pending-per-source",
    "silent-raised": "--max-pending-per-source",
    "held": "--max-associations-per-source",
    "connect-flood": None,
    "tls-hello-flood": "--tls-handshakes-per-source",
}


@pytest.mark.parametrize("attack", list(abuse.ATTACKS))
def test_attack(attack: str) -> None:
    if attack.startswith("silent") and shutil.which("prlimit") is None:
        pytest.fail("prlimit (util-linux) is needed for the silent-connection attack")
    if attack.startswith("tls") and shutil.which("openssl") is None:
        pytest.fail("openssl is needed for the TLS attack's certificate")
    raiseFileLimit(4 * abuse.MAX_ASSOCIATIONS + 6000)
    with tempfile.TemporaryFile() as log:
        result = abuse.runAttack(attack, 1.5, log)
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
    assert result["baseline"]["errors"] == 0, result
    assert result["underAttack"]["errors"] == 0, result
    assert result["underAttack"]["opsPerSecond"] > 0, result
    limited = [line for line in lines if re.match(r"^W: Source 127\.0\.0\.3: \d+ refused", line)]
    expected = EXPECTED_LIMIT[attack]
    if expected is not None:
        assert any(expected in line for line in limited), lines[-20:]
    # The normal SCU's source is never refused.
    assert not any("127.0.0.2" in line for line in limited), limited
    # One line per source and limit per interval: a few, never a flood.
    assert len(limited) <= 3, limited
    after = result["server"]["after"]
    assert after["fds"] <= result["server"]["before"]["fds"] + 2, result["server"]
