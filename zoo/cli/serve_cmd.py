"""`zoo serve [--host H] [--port P] [--home DIR] [--preload NAME ...] [...]`: the gRPC server.

Every flag has an environment variable: `ZOO_SERVE_<FLAG>` with dashes as underscores
(`--max-batch-size` is `ZOO_SERVE_MAX_BATCH_SIZE`), except `--token` (`ZOO_TOKEN`) and
`--home` (`ZOO_HOME`). Flags win over the environment. Logs are JSON lines on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "serve", help="run the gRPC server: inference, fine-tune jobs, model store",
        description="Serve every model in the zoo over gRPC (zoo.v1, and the Open Inference "
                    "Protocol that Triton and KServe clients speak; over HTTP too with "
                    "--http-port), fine-tune new ones on uploaded data and serve each result "
                    "as soon as it is trained. Stops gracefully on SIGTERM/SIGINT.")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, help="port (default 50051; 0: any free port)")
    p.add_argument("--http-port", type=int,
                   help="also serve the Open Inference Protocol (KServe v2) over HTTP/REST on "
                        "this port (default off; 0: any free port); gRPC has it on --port")
    p.add_argument("--home", type=Path, help="cache, model store, datasets, jobs and server.db "
                                             "(default: $ZOO_HOME, else ~/.cache/zoo)")
    p.add_argument("--preload", nargs="+", metavar="NAME", help="load (and warm up) these "
                                                                "models before serving")
    b = p.add_argument_group("inference")
    b.add_argument("--max-batch-size", type=int, help="inputs per compiled call (default 32)")
    b.add_argument("--max-queue-delay-ms", type=float,
                   help="how long a batch may wait for more requests (default 5)")
    b.add_argument("--batch-threads", type=int, help="batches of one model running at once; "
                                                     "a second fills the cores the first leaves "
                                                     "idle (default 2)")
    b.add_argument("--max-queue", type=int, help="inputs waiting per model before "
                                                 "RESOURCE_EXHAUSTED (default 512)")
    b.add_argument("--memory-budget-mb", type=int, help="weights of loaded models; idle ones are "
                                                        "evicted LRU past it (default 4096)")
    b.add_argument("--decode-threads", type=int, help="image decoding pool (default: CPU cores)")
    b.add_argument("--intra-op-threads", type=int, help="TensorFlow intra-op threads (default: TF's)")
    b.add_argument("--inter-op-threads", type=int, help="TensorFlow inter-op threads (default: TF's)")
    b.add_argument("--rpc-threads", type=int, help="concurrent RPC handlers (default 64)")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-message-mb", type=int, help="gRPC message size limit (default 64)")
    lim.add_argument("--max-image-pixels", type=int, help="width x height limit, checked from the "
                                                          "header (default 64000000)")
    lim.add_argument("--max-upload-mb", type=int, help="one dataset upload (default 2048)")
    lim.add_argument("--max-extract-mb", type=int, help="an archive's uncompressed size (default 8192)")
    lim.add_argument("--max-extract-files", type=int, help="files in one archive (default 200000)")
    j = p.add_argument_group("fine-tune jobs")
    j.add_argument("--max-jobs", type=int, help="jobs training at once; 0: none (default 1)")
    s = p.add_argument_group("security and operations")
    s.add_argument("--token", help="require 'authorization: Bearer TOKEN' (health stays open); "
                                   "prefer $ZOO_TOKEN, which other users cannot see in ps")
    s.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key)")
    s.add_argument("--tls-key", type=Path, help="PEM private key")
    s.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    s.add_argument("--metrics-host", help="address for /metrics (default 127.0.0.1)")
    s.add_argument("--grace", dest="grace_s", type=float,
                   help="seconds in-flight calls get on shutdown (default 10)")
    s.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="debug logs every RPC (default info)")
    p.set_defaults(run=run)


CONFIG_FLAGS = ("max_batch_size", "max_queue_delay_ms", "max_queue", "batch_threads",
                "memory_budget_mb", "decode_threads", "intra_op_threads", "inter_op_threads",
                "rpc_threads", "max_message_mb", "max_image_pixels", "max_upload_mb",
                "max_extract_mb", "max_extract_files", "max_jobs", "token", "tls_cert",
                "tls_key", "http_port", "metrics_port", "metrics_host", "grace_s", "log_level")


def run(args: argparse.Namespace) -> int:
    from zoo_server.config import DEFAULT_HOST, DEFAULT_PORT, ServerConfig

    overrides = {name: getattr(args, name) for name in CONFIG_FLAGS}
    if args.preload:
        overrides["preload"] = tuple(args.preload)
    config = ServerConfig.from_env(**overrides)
    host = args.host or os.environ.get("ZOO_SERVE_HOST") or DEFAULT_HOST
    port = args.port if args.port is not None else int(os.environ.get("ZOO_SERVE_PORT")
                                                        or DEFAULT_PORT)
    from zoo_server.server import address_of, check_free, serve

    check_free(address_of(host, port))  # bad settings and a taken port fail before TF loads
    if config.http_port is not None:
        check_free(address_of(host, config.http_port), "--http-port")
    from zoo.quiet import import_tensorflow

    import_tensorflow()

    code = serve(host, port, home=args.home, config=config)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # handler threads of calls cut off by the grace period must not keep us
