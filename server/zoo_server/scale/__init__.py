"""Zoo on Ray (`zoo serve --ray`, the optional extra `zoo[ray]`).

The `zoo serve` process stays the front door (both APIs, auth, limits, the SQLite job
store, the model manager's decisions); the work moves to a Ray cluster:

    nodes     a Ray node in a process of its own (`ray start --block`): --ray auto, tests, bench
    cluster   connecting the server to Ray (and Ray Serve, with no proxies of its own)
    shared    the model store every node reaches: a shared folder or an fsspec URL
    replicas  each loaded model as a Ray Serve deployment of replicas, each batching its own
              requests; a loader whose `run` calls the deployment through its handle
    jobs      each fine-tune job as a Ray actor with declared CPUs and memory, resumed on
              another node from its last checkpoint when its node dies
    features  phase 1's frozen forward pass sharded over actors on every node
    install   whether Ray is there, and the one line that names the fix when it is not
    attach    all of it wired into a server (zoo_server.server calls it for --ray)

Nothing outside this package imports Ray, and only `zoo serve --ray` imports this package,
so a server without the extra is the server it always was.
"""
