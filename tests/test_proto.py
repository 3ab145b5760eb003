"""The generated zoo.v1 code is what `make proto` makes from proto/ today."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", "proto",
         f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}", f"--mypy_out={tmp_path}",
         f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
         f"--mypy_grpc_out={tmp_path}", *protos],
        cwd=ROOT, check=True,
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = ROOT / "client"
    assert fresh, "protoc generated nothing"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    assert not stale, f"generated code is stale, run `make proto`: {stale}"
    on_disk = {p.relative_to(committed) for p in (committed / "zoo_api").rglob("*_pb2*.py*")}
    assert on_disk == set(fresh), "generated files were added or removed by hand"
