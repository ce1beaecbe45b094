"""The README's commands and Python snippets, run in order as a reader would (tests/readme.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import readme
from tests import patient

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


def environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200",
            "PYTHONPATH": str(readme.ROOT)}


@pytest.mark.parametrize("block", readme.runnable(), ids=lambda b: b.id)
def test_readme_block(block, workdir, no_leaks):
    if block.file:
        target = workdir / block.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text)
        return
    if block.lang == "python":
        script = workdir / f"block_{block.line}.py"
        script.write_text(block.text)
        result = patient.run([sys.executable, str(script)], cwd=workdir, capture_output=True, text=True,
                                timeout=600, env=environment())
        assert result.returncode == 0, f"{block.id}:\n{result.stdout}\n{result.stderr}"
        return
    for command, expected in block.commands():
        result = patient.run(["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=900,
                                env=environment(), stdin=subprocess.DEVNULL)
        assert result.returncode == expected, (f"{block.id}: `{command}` exited {result.returncode}, the README "
                                               f"says {expected}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
