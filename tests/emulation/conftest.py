from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
K8SNET = [sys.executable, "-m", "k8snet.cli"]


@pytest.fixture(scope="module", autouse=True)
def _root_and_no_leaks(root_required, no_leaks_module):
    """Every emulation module runs as root and must leave nothing of ours behind
    (tests that build their own cluster also use the per-test ``no_leaks``)."""
    yield


def k8snet_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


#: A ClusterIP Service over the specs' ``app: web`` pods, port 80 to the agent's 8080
#: (the servers are started by the test: ``net.serve(pod, 8080)``).
WEB_SERVICE = """
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""
