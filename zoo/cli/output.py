"""Shared output helpers: JSON for scripts, aligned tables for people, bars on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from zoo.hub.download import Progress


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def format_params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


class ProgressBar:
    """A tqdm bar on stderr for one file, created on the first progress callback."""

    def __init__(self, description: str, enabled: bool = True):
        self.description = description
        self.enabled = enabled
        self._bar: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024,
                desc=self.description, file=sys.stderr, leave=False,
            )
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_for(description: str, quiet: bool = False) -> ProgressBar:
    return ProgressBar(description, enabled=not quiet and sys.stderr.isatty())


__all__ = ["Progress", "ProgressBar", "format_params", "print_json", "print_table", "progress_for"]
