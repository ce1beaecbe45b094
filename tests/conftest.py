"""Shared fixtures: markers by folder, and the leak check every emulation test runs under."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers import Snapshot

# Property-based tests: the same examples on every CI run (derandomized, no example
# database), fresh ones on a developer's machine.
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "emulation" in parts:
            item.add_marker(pytest.mark.emulation)
        if "flows" in parts:
            item.add_marker(pytest.mark.flows)


def _check_leaks():
    before = Snapshot.take()
    yield before
    leaks = Snapshot.take().leaks_since(before)
    assert not leaks, f"left behind: {leaks}"


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves a namespace, root-namespace link, process or run dir of ours."""
    yield from _check_leaks()


@pytest.fixture(scope="module")
def no_leaks_module():
    """The same check around a whole module (for module-scoped clusters)."""
    yield from _check_leaks()


@pytest.fixture(scope="session")
def root_required():
    if os.geteuid() != 0:
        pytest.fail("emulation tests need root (network namespaces, OVS); run them as root")
