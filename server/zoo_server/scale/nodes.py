"""A Ray node in a process of its own: `ray start --block`, stopped by its process ids.

`zoo serve --ray auto` starts one as the head of a local cluster, with the allowlisted
environment job workers get (never the server's token or settings); the tests and
bench/scale.py start a head and more nodes on one machine, each with its own raylet, node
id and resources, which is what separate hosts look like to Ray. Every process a node
started (raylet, GCS, agents, workers) is found through the process tree and ended by its
id, so stopping one node never touches another's processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from zoo_server.errors import ServerError

STARTED = "Ray runtime started"
MIB = 1024 * 1024
# The smallest object store Ray accepts; Zoo moves batches and feature shards, not datasets.
OBJECT_STORE_MB = 80


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first found first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class RayNode:
    """One running `ray start --block`; `address` is the cluster's (the head's GCS)."""

    process: subprocess.Popen[bytes]
    address: str
    log: Path
    head: bool
    _tree: list[int] = field(default_factory=list)
    _gone: bool = False

    def processes(self) -> list[int]:
        """This node's processes now (remembered, so a node whose root died is still found)."""
        tree = descendants(self.process.pid)
        self._tree = sorted(set(self._tree) | set(tree))
        return [self.process.pid, *self._tree]

    def stop(self, timeout: float = 15) -> None:
        """Ask `ray start --block` to stop its node (it ends the raylet and its workers);
        whatever is left after `timeout` is killed. Once stopped, a node is never touched
        again (its process ids may belong to others by then)."""
        if self._gone:
            return
        self.processes()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL every process of this node at once: what a machine failure looks like."""
        if self._gone:
            return
        _kill(self.processes(), signal.SIGKILL)
        self._gone = True
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass


# Linux: the node gets SIGTERM (and stops its processes) when the process that started it
# dies, however it dies; then `ray start` takes its place (exec keeps the setting).
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def start_node(*, head: bool, address: str | None = None, port: int = 0, num_cpus: float = 1,
               resources: dict[str, float] | None = None,
               object_store_mb: int = OBJECT_STORE_MB, env: dict[str, str] | None = None,
               temp_dir: Path | None = None, log: Path, node_ip: str = "127.0.0.1",
               timeout: float = 120, die_with_parent: bool = False) -> RayNode:
    """Start a head (`head=True`, GCS on `port`) or a node joining `address`, and wait until
    it runs. `temp_dir` (head only) should be short: Ray's socket paths must fit 107 bytes.
    `die_with_parent`: the node stops when this process's current thread ends, even killed
    (call it from the main thread)."""
    args = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
            "--node-ip-address", node_ip, "--num-cpus", str(num_cpus),
            "--object-store-memory", str(object_store_mb * MIB), "--disable-usage-stats"]
    if resources:
        args += ["--resources", json.dumps(resources)]
    if head:
        port = port or free_port(node_ip)
        args += ["--head", "--port", str(port), "--include-dashboard", "false"]
        if temp_dir is not None:
            args += ["--temp-dir", str(temp_dir)]
        address = f"{node_ip}:{port}"
    elif address is None:
        raise ValueError("a node that is not the head needs the cluster's address")
    else:
        args += ["--address", address]
    if die_with_parent:
        args = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**(os.environ if env is None else env), "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "ab") as out:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    node = RayNode(process, address, log, head)
    deadline = time.monotonic() + timeout
    while STARTED not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            node.stop(5)
            tail = log.read_text(errors="replace")[-1500:]
            raise ServerError(f"could not start a Ray {'head' if head else 'node'}: {tail}")
        time.sleep(0.2)
    node.processes()
    return node
