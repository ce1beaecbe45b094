"""The README's code blocks, as the tests that run them see them.

Conventions (so that every block either runs in a test or says why not):

* a ```` ```sh ```` block: each line that is not blank and not a comment is a command, run
  with ``bash`` in one scratch folder shared by the whole README, with ``.venv/bin`` first
  on ``PATH``; ``exit N`` in the line's trailing comment is the status it must end with
  (0 otherwise);
* a ```` ```python ```` block runs as a script in the same folder;
* ``<!-- file: PATH -->`` on the line before a block (of any language): the block is
  written to ``PATH`` in that folder instead of being run (a scenario file, a test file or a
  spec a later block uses);
* ``<!-- illustrative: WHY -->`` on the line before a block: not run; WHY names the file
  (a test, ``.ci/run``) that does cover what the block shows;
* ```` ```yaml ```` blocks that start with ``apiVersion`` are cluster specs: they must load;
* blocks without a language are output and are not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CODE = ("sh", "python")
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_MARK = re.compile(r"<!--\s*(illustrative|file):\s*(.+?)\s*-->\s*$")
_EXIT = re.compile(r"#.*\bexit (\d+)")


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    text: str
    illustrative: Optional[str] = None
    file: Optional[str] = None

    @property
    def id(self) -> str:
        return f"README.md:{self.line}-{self.lang}"

    def commands(self) -> list[tuple[str, int]]:
        """(command, expected exit status) for each command line of a sh block."""
        out = []
        for line in self.text.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            expected = _EXIT.search(stripped)
            out.append((stripped, int(expected.group(1)) if expected else 0))
        return out


def blocks(text: Optional[str] = None) -> list[Block]:
    text = README.read_text() if text is None else text
    out = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        kind, value = (mark.group(1), mark.group(2)) if mark else (None, None)
        out.append(Block(line, m.group(1), m.group(2), illustrative=value if kind == "illustrative" else None,
                         file=value if kind == "file" else None))
    return out


def runnable() -> list[Block]:
    return [b for b in blocks() if (b.lang in CODE or b.file) and b.illustrative is None]
