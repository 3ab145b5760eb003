"""`zoo --server HOST:PORT ...`: the same commands, run by a Zoo server through zoo_client.

With `--server` (or `ZOO_SERVER`), `list`, `predict`, `finetune` and `jobs` talk to a
running server instead of working locally; `--token` (or `ZOO_TOKEN`) authenticates.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from zoo.errors import ZooError


class RemoteError(ZooError):
    """A failed call to the server, as one line (the status code and its message)."""


@contextmanager
def client(args: argparse.Namespace) -> Iterator[Any]:
    from zoo_client import ZooClient, ZooClientError

    with ZooClient(args.server, token=args.token, timeout=args.timeout) as zoo:
        try:
            yield zoo
        except ZooClientError as e:
            fix = {
                "UNAVAILABLE": f"; is `zoo serve` running at {args.server}?",
                "UNAUTHENTICATED": "; pass --token or set ZOO_TOKEN",
            }.get(e.code.name, "")
            raise RemoteError(f"{args.server}: {e.code.name}: {e}{fix}") from None


def job_event_line(event: Any) -> str | None:
    """A job event as the line the local `zoo finetune` prints for it: the server words every
    event with zoo.finetuning.events, so this is its message (state changes say their state
    when they carry none)."""
    if event.message:
        return f"{event.kind}: {event.message}" if event.kind == "state" else str(event.message)
    if event.kind == "state":
        return f"state: {event.state}"
    return None
