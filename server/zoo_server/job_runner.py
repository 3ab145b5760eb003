"""One fine-tune job, in its own process: `python -m zoo_server.job_runner JOB_DIR/job.json`.

The server starts one of these per running job, so training never slows the server's
gRPC threads (and a crash here cannot take the server down). Events go to the server as
JSON lines on stdout; everything else (TensorFlow's chatter, tracebacks) goes to stderr,
which the server appends to JOB_DIR/worker.log.

Stopping: SIGTERM, or a `cancel` file in JOB_DIR, or the server going away, makes the
library's `should_stop` return True; training ends after a checkpoint and the process
exits with STOPPED (3). The server reruns a stopped job with resume=True.

Exit codes: 0 done (a `result` event was sent), 1 failed (an `error` event was sent),
3 stopped on request.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any

STOPPED = 3
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Linux: get SIGKILL when the server dies, so no orphan keeps training (and writing
    checkpoints) while a restarted server resumes the same job."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # it died before prctl
        os._exit(STOPPED)


class Events:
    """JSON lines to the server on the original stdout; fd 1 itself now goes to stderr."""

    def __init__(self) -> None:
        self._out: IO[str] = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self._out.write(json.dumps(event, default=str) + "\n")
        except (BrokenPipeError, OSError):
            os._exit(STOPPED)  # the server is gone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run one Zoo fine-tune job (started by zoo serve)")
    parser.add_argument("job_file", type=Path)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    if args.parent_pid:
        _die_with_parent(args.parent_pid)
    try:
        os.nice(5)  # training yields the CPU to the server's inference threads
    except OSError:
        pass
    emit = Events()
    spec = json.loads(args.job_file.read_text(encoding="utf-8"))
    job_dir = args.job_file.parent
    cancel_file = job_dir / "cancel"
    stop = {"requested": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the server's to handle

    def should_stop() -> bool:
        return (stop["requested"] or cancel_file.exists()
                or (args.parent_pid and os.getppid() != args.parent_pid))

    # One process per job directory: a leftover worker must be gone before this one trains.
    lock = open(job_dir / "lock", "w")  # noqa: SIM115
    deadline = time.monotonic() + 60
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline or should_stop():
                emit({"event": "error", "message": "another process still runs this job"})
                return 1
            time.sleep(0.5)

    from zoo.quiet import import_tensorflow

    import_tensorflow()
    import zoo

    try:
        # record=False: the server registers the result in its own model store
        # (ZOO_HOME/models); the local index is for models made by `zoo finetune`.
        result = zoo.finetune(
            spec["base"], spec["data"], spec["out"], resume=bool(spec.get("resume")),
            name=spec["name"], record=False, on_event=emit, should_stop=should_stop,
            **spec.get("hyperparameters", {}),
        )
    except InterruptedError:
        return STOPPED
    except zoo.ZooError as e:
        emit({"event": "error", "message": str(e), "type": type(e).__name__})
        return 1
    except Exception as e:
        traceback.print_exc()
        emit({"event": "error", "message": f"{type(e).__name__}: {e}", "type": type(e).__name__})
        return 1
    emit({"event": "result", "output_dir": str(result.output_dir),
          "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
          "epochs_run": result.epochs_run})
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip TensorFlow's slow interpreter teardown
