"""Download throughput: Zoo's verified downloader against curl, same file, same server.

Serves a ~200 MB file from the test static server (in its own process, so it does not
share our GIL) and fetches it with `curl -o` and with `zoo.hub.download.place_file`, which
also hashes (md5, as most Keras files pin) while streaming.
Prints the best of N runs for each and the ratio. Goal: zoo / curl >= 0.9.

    .venv/bin/python bench/download.py [--size-mb 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.base import ServerProcess  # noqa: E402
from zoo.hub.download import place_file  # noqa: E402
from zoo.hub.manifest import Checksum, FileEntry  # noqa: E402


def best_time(runs: int, fetch) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fetch()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("bench/download.py needs curl on PATH (apt-get install curl)")

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    try:
        data = os.urandom(args.size_mb * 1024 * 1024)
        (work / "serve").mkdir()
        (work / "serve" / "weights.h5").write_bytes(data)
        entries = {
            algorithm: FileEntry(
                filename="weights.h5", origin="https://example.invalid/weights.h5",
                size=len(data), checksum=Checksum(algorithm, hashlib.new(algorithm, data).hexdigest()),
            )
            for algorithm in ("md5", "sha256")
        }
        size = len(data)
        del data
        os.environ["ZOO_HOME"] = str(work / "home")
        with ServerProcess("static", "--root", str(work / "serve")) as server:
            url = f"{server.url}/weights.h5"
            dest = work / "home" / "weights.h5"

            def with_curl() -> None:
                out = work / "curl.h5"
                subprocess.run(["curl", "-sSf", "-o", str(out), url], check=True)
                out.unlink()

            def with_curl_then_md5sum() -> None:
                out = work / "curl.h5"
                subprocess.run(["curl", "-sSf", "-o", str(out), url], check=True)
                subprocess.run(["md5sum", str(out)], check=True, capture_output=True)
                out.unlink()

            def with_zoo(algorithm: str):
                def fetch() -> None:
                    place_file(dest, entries[algorithm], [url])
                    dest.unlink()
                return fetch

            with_curl(), with_zoo("md5")()  # warm the page cache and the connection pools
            timings = {
                "curl -o (no verification)": best_time(args.runs, with_curl),
                "curl -o, then md5sum": best_time(args.runs, with_curl_then_md5sum),
                "zoo, md5 pinned": best_time(args.runs, with_zoo("md5")),
                "zoo, sha256 pinned": best_time(args.runs, with_zoo("sha256")),
            }
        mb = size / 1e6
        print(f"file: {mb:.0f} MB over loopback, best of {args.runs} runs each")
        for label, seconds in timings.items():
            print(f"{label:<28} {seconds:6.3f} s  {mb / seconds:8.1f} MB/s")
        curl_s = timings["curl -o (no verification)"]
        for label in ("zoo, md5 pinned", "zoo, sha256 pinned"):
            print(f"ratio {label} / curl: {curl_s / timings[label]:.2f}  (goal >= 0.90)")
        print(f"ratio zoo md5 / (curl + md5sum): {timings['curl -o, then md5sum'] / timings['zoo, md5 pinned']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
