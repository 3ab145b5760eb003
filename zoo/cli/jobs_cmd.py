"""`zoo --server HOST:PORT jobs [list | show ID | watch ID | cancel ID]`: fine-tune jobs on a server."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from zoo.cli import remote
from zoo.cli.output import print_json, print_table
from zoo.errors import InvalidInputError


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("jobs", help="list, show, watch or cancel fine-tune jobs on a server")
    p.add_argument("action", nargs="?", default="list", choices=("list", "show", "watch", "cancel"))
    p.add_argument("job_id", nargs="?", metavar="ID")
    p.add_argument("--state", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.server:
        raise InvalidInputError("jobs live on a server: pass --server HOST:PORT (or set ZOO_SERVER)")
    if args.action != "list" and not args.job_id:
        raise InvalidInputError(f"`zoo jobs {args.action}` needs a job id; see `zoo jobs list`")
    with remote.client(args) as zoo:
        if args.action == "list":
            jobs = zoo.list_jobs(state=args.state)
            if args.json:
                print_json([asdict(j) for j in jobs])
            elif not jobs:
                print("no jobs")
            else:
                print_table(("ID", "STATE", "BASE", "OUTPUT", "EPOCH", "ACCURACY"),
                            [(j.id, j.state, j.base, j.output_name, f"{j.epoch}/{j.epochs}",
                              f"{j.metrics['accuracy']:.3f}" if "accuracy" in j.metrics else "-")
                             for j in jobs])
            return 0
        if args.action == "watch":
            for event in zoo.watch_job(args.job_id):
                line = remote.job_event_line(event)
                if args.json:
                    print_json(asdict(event))
                elif line:
                    print(line, flush=True)
        job = zoo.cancel_job(args.job_id) if args.action == "cancel" else zoo.get_job(args.job_id)
        if args.json:
            print_json(asdict(job))
        else:
            for key, value in asdict(job).items():
                print(f"{key:<14}{value}")
        return 0
