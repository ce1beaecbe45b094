"""Every README code block is run by a test or says which file covers it (tests/readme.py)."""

from __future__ import annotations

import re

import pytest
import yaml

from k8snet.model.manifests import load_text
from tests import readme

BLOCKS = readme.blocks()


def test_the_readme_has_code_blocks_and_most_of_them_run():
    code = [b for b in BLOCKS if b.lang in readme.CODE]
    assert len(code) >= 10
    assert len(readme.runnable()) > len(code) / 2


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in readme.CODE and b.illustrative],
                         ids=lambda b: b.id)
def test_an_illustrative_block_names_the_file_that_covers_it(block):
    named = re.findall(r"(?:tests|examples|bench|\.ci)/[\w./-]+", block.illustrative)
    assert named, f"{block.id}: say which test covers it: {block.illustrative!r}"
    for path in named:
        assert (readme.ROOT / path.split("::")[0].rstrip(".,;)")).exists(), f"{block.id}: {path} does not exist"


def test_every_block_has_a_known_language():
    unknown = [b.id for b in BLOCKS if b.lang not in ("", "sh", "python", "yaml")]
    assert not unknown, f"use sh, python, yaml or no language (output): {unknown}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "yaml" and b.text.startswith("apiVersion")],
                         ids=lambda b: b.id)
def test_a_spec_in_the_readme_loads(block):
    assert all(isinstance(d, dict) for d in yaml.safe_load_all(block.text))
    load_text(block.text)


def test_the_conventions_are_read_as_documented():
    text = ("<!-- illustrative: tests/x -->\n```sh\nmake demo\n```\n\n```sh\n# a comment\n"
            "k8snet check racks --backend host-gw   # exit 1, says why\nk8snet check\n```\n"
            "<!-- file: s/hello.py -->\n```python\nprint(1)\n```\n")
    first, second, third = readme.blocks(text)
    assert first.illustrative == "tests/x" and first.lang == "sh"
    assert second.commands() == [("k8snet check racks --backend host-gw   # exit 1, says why", 1),
                                 ("k8snet check", 0)]
    assert third.file == "s/hello.py" and third.illustrative is None
