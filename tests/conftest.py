"""
Hypothesis profiles: C{ci} (selected when CI=true) is derandomized so a CI
run is reproducible; C{dev} explores new examples every run.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")
