"""The README's tables of settings are made from their one source (tools/readme_tables.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_readme_settings_tables_are_fresh() -> None:
    check = subprocess.run([sys.executable, str(ROOT / "tools" / "readme_tables.py"), "--check"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
