"""Texts for `zoo embed`, `zoo similar` and `zoo predict`: from the command line or a UTF-8
file, one per line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.errors import InvalidInputError


def positive_int(value: str) -> int:
    """argparse type: a bad number is a usage error (exit 2), like any other bad flag."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def read_lines(path: str) -> list[tuple[int, str]]:
    """The non-empty lines of a UTF-8 text file ("-": standard input), with line numbers.

    Lines end at "\\n" (a trailing "\\r" is dropped); a byte-order mark is ignored; lines of
    only whitespace are skipped. A missing, unreadable, binary or non-UTF-8 file, or one with
    no text at all, is an InvalidInputError that names the file.
    """
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{path}: is a folder, not a text file") from None
    except OSError as e:
        raise InvalidInputError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); "
            "convert it first, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    if "\x00" in text:
        raise InvalidInputError(f"{path}: holds NUL bytes; give a text file, one text per line")
    lines = [
        (number, line.rstrip("\r"))
        for number, line in enumerate(text.split("\n"), start=1)
        if line.strip()
    ]
    if not lines:
        raise InvalidInputError(f"{path}: has no text (every line is empty)")
    return lines


def add_text_source(parser: argparse.ArgumentParser, required: bool, what: str) -> None:
    """`--text TEXT...` (repeatable; every use adds texts) or `--file FILE`, not both."""
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--text", nargs="+", action="extend", metavar="TEXT", help=what)
    source.add_argument(
        "--file", metavar="FILE", help="a UTF-8 file, one text per non-empty line ('-': stdin)"
    )


def texts_of(args: argparse.Namespace) -> tuple[list[str], list[int] | None]:
    """The texts given and, for a file, their line numbers."""
    if args.file is not None:
        lines = read_lines(args.file)
        return [text for _, text in lines], [number for number, _ in lines]
    return list(args.text or []), None
