"""The AsyncAPI document of the contract is checked by the official parser (@asyncapi/parser, through
examples/asyncapi-check), its JSON Schema 2020-12 payloads resolved beside it; the checker fails on broken copies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.core.schemas import SCHEMAS

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT / "examples" / "asyncapi-check"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not on PATH: the AsyncAPI check needs Node.js 20 or later"),
    pytest.mark.skipif(not (CHECKER / "node_modules").is_dir(),
                       reason="examples/asyncapi-check/node_modules is missing: npm ci --prefix examples/asyncapi-check"),
]


def _check(document: Path) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, str(CHECKER / "check.mjs"), str(document)], capture_output=True, text=True,
                          timeout=300, cwd=document.parent.parent)  # not the document's folder: refs resolve beside it


def test_the_shipped_asyncapi_document_is_valid() -> None:
    run = _check(SCHEMAS / "asyncapi.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "valid AsyncAPI 3.0.0 (6 channels, 6 operations, 4 messages)" in run.stdout


BREAKS = {
    "unsupported version": ("asyncapi.yaml", "asyncapi: 3.0.0\n", "asyncapi: 9.9.9\n", "asyncapi-is-asyncapi"),
    "operation on a missing channel": ("asyncapi.yaml", '$ref: "#/channels/framesV1"\n',
                                       '$ref: "#/channels/noSuchChannel"\n', "'#/channels/noSuchChannel' does not exist"),
    "payload file missing": ("asyncapi.yaml", '$ref: "./frame.schema.json"', '$ref: "./no-such.schema.json"',
                             "no-such.schema.json"),
    "plain scalar with a colon": ("asyncapi.yaml", "    title: Every event of every source (pub/sub)\n",
                                  "    title: Every event: of every source\n", "error parser"),
    "payload not JSON Schema 2020-12": ("frame.schema.json", '"type": "integer", "minimum": 0',
                                        '"type": "whole number", "minimum": 0', "not a valid JSON Schema 2020-12"),
}


@pytest.mark.parametrize("name", BREAKS)
def test_the_checker_fails_on_a_broken_copy(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    target, old, new, expected = BREAKS[name]
    text = (folder / target).read_text()
    assert old in text, f"the break {name!r} no longer applies to {target}"
    (folder / target).write_text(text.replace(old, new, 1))
    run = _check(folder / "asyncapi.yaml")
    assert run.returncode == 1, run.stdout + run.stderr
    assert expected in run.stdout, run.stdout
