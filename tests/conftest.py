"""Shared pytest configuration: hypothesis profiles and the thread-count guard.

Profiles (choose with ``HYPOTHESIS_PROFILE=<name>``; the default is "default"):

- ``default``: about 60 random examples per property test, no deadline (the first call of
  a kernel may be slow while OpenMP starts its threads).
- ``ci``: the same number of examples, and hypothesis prints the seed of a failure
  (``print_blob``) so that a CI failure can be reproduced locally.
- ``thorough``: 500 examples, for a long run before a release.

Randomised, not derandomised: every run explores new configurations. A failure found by
hypothesis is replayed from its local example database first on the next run.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

settings.register_profile("default", max_examples=60, **_COMMON)
settings.register_profile("ci", max_examples=60, print_blob=True, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def restore_threads():
    """Give the test the kernels' thread count to play with; put it back afterwards."""
    from cyconv import kernels

    before = kernels.get_num_threads()
    yield before
    kernels.set_num_threads(before)
