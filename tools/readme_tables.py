"""Write the README's tables of settings from their one source, or check they are fresh.

    python tools/readme_tables.py          # rewrite the tables in README.md
    python tools/readme_tables.py --check  # exit 1 if README.md differs (tests run this)

Each table sits between `<!-- NAME -->` and `<!-- /NAME -->` markers:
`server-flags` from zoo_server.config.ServerConfig, `server-limits` from its settings that
say what a request past them gets (and the fixed limits' constants), `hyperparameters` from
zoo.finetuning.hyperparameters.HyperParameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "server"), str(ROOT / "client")]

from zoo.finetuning.hyperparameters import HyperParameters, flag_of, rule  # noqa: E402
from zoo_server.cli import flag_of as server_flag  # noqa: E402
from zoo_server.config import env_var, settings  # noqa: E402
from zoo_server.datasets import MAX_TAR_METADATA  # noqa: E402
from zoo_server.errors import MESSAGE_LIMIT, QUOTE_LIMIT  # noqa: E402
from zoo_server.services.inference import STREAM_WINDOW  # noqa: E402


def _default(value: object) -> str:
    if value is None or value is False:
        return "off"
    if isinstance(value, tuple):
        return "none" if not value else " ".join(map(str, value))
    return str(value)


def server_flags() -> str:
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for f in settings():
        rows.append(f"| `{server_flag(f)}` | `{env_var(f.name)}` | {_default(f.default)} | "
                    f"{f.metadata['help']} |")
    return "\n".join(rows)


# Limits no flag changes: (what, value, what a request past it gets).
FIXED_LIMITS = (
    ("a tar long-name or pax record", f"{MAX_TAR_METADATA // 1024} KiB",
     "INVALID_ARGUMENT, before it is read"),
    ("requests of one ClassifyStream in progress", str(STREAM_WINDOW),
     "the stream reads no more until one is answered"),
    ("characters of a client's string quoted in a message", str(QUOTE_LIMIT),
     "cut, its length said"),
    ("characters of a status message", str(MESSAGE_LIMIT), "cut"),
)


def server_limits() -> str:
    rows = ["| limit | flag | default | past it |", "|---|---|---|---|"]
    for f in settings():
        if f.metadata.get("past"):
            rows.append(f"| {f.metadata['help']} | `{server_flag(f)}` | {_default(f.default)} | "
                        f"{f.metadata['past']} |")
    rows += [f"| {what} | (fixed) | {value} | {past} |" for what, value, past in FIXED_LIMITS]
    return "\n".join(rows)


def hyperparameters() -> str:
    rows = ["| flag (Python keyword) | default | range | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(HyperParameters):
        r = rule(f.name)
        span = "true/false" if r.kind is bool else r.bounds()
        images = " (images only)" if r.image_only else ""
        # A boolean's flag switches its default: off unless given.
        default = f"off (`{f.name}={f.default}`)" if r.kind is bool else _default(f.default)
        rows.append(f"| `{flag_of(f.name)}` (`{f.name}`) | {default} | {span} | "
                    f"{r.help}{images} |")
    return "\n".join(rows)


TABLES = {"server-flags": server_flags, "server-limits": server_limits,
          "hyperparameters": hyperparameters}


def render(text: str) -> str:
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name} -->\n).*?(\n<!-- /{name} -->)", re.S)
        match = pattern.search(text)
        if match is None:
            raise SystemExit(f"README.md has no <!-- {name} --> ... <!-- /{name} --> markers")
        text = text[: match.start()] + match.group(1) + make() + match.group(2) + text[match.end():]
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is stale")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    current = readme.read_text(encoding="utf-8")
    fresh = render(current)
    if args.check:
        if fresh != current:
            print("README.md's settings tables are stale: run python tools/readme_tables.py",
                  file=sys.stderr)
            return 1
        return 0
    readme.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
