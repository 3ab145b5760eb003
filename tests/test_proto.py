"""The generated gRPC code (zoo_api for zoo.v1, zoo_oip for the Open Inference Protocol) is
what `make proto` makes from proto/ today."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("zoo_api", "zoo_oip")


def generated(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for package in PACKAGES for p in (folder / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make (the Makefile generates)")
def test_generated_code_is_fresh(tmp_path: Path) -> None:
    # The Makefile's own recipe, into a temporary folder, with this interpreter's tools.
    venv = Path(sys.executable).parent.parent
    subprocess.run(["make", "--no-print-directory", "-s", "proto-files", f"PROTO_OUT={tmp_path}",
                    f"PY={sys.executable}", f"VENV={venv}"],
                   cwd=ROOT, check=True, capture_output=True)
    fresh = generated(tmp_path)
    committed = ROOT / "client"
    assert {p.parts[0] for p in fresh} == set(PACKAGES), "protoc generated nothing for a package"
    stale = [str(p) for p in sorted(fresh) if not (committed / p).is_file()
             or not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    assert not stale, f"generated code is stale, run `make proto`: {stale}"
    assert generated(committed) == fresh, "generated files were added or removed by hand"
