"""Zoo on Ray (`zoo serve --ray`) on a real multi-node cluster on this machine.

The module's cluster is a head and a second node, each a `ray start` process of its own
(its own raylet, node id, ZOO_HOME and resources: one CPU each, and a custom resource,
`head` or `trainer`, so where things land is provable), with a small object store. It shows:
phase 1's features sharded over both nodes equal the single-process ones (and so does the
head trained on them); requests to one model answered by two replicas on two nodes; two
jobs training at once, one on each node; a job placed on the second node, that node killed
mid-job, and the job finished on a third node from its checkpoint, its model served at
once. `--ray auto` starts (and stops) a local instance of its own.

Skipped where Ray is not installed (`make test` installs it: the `ray` extra).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'zoo[ray]' "
                                        "(make test installs it)")

from tests.conftest import TINY  # noqa: E402
from tests.digits import write_digits  # noqa: E402
from tests.serving import (  # noqa: E402
    ServerProcess,
    Stubs,
    distinct_images,
    mirror_env,
    spec,
    upload_requests,
    wait_for,
    zip_folder,
)
from zoo_api.v1 import finetune_pb2, inference_pb2, models_pb2  # noqa: E402
from zoo_server.scale.jobs import DATA_ROOT  # noqa: E402
from zoo_server.scale.nodes import RayNode, start_node  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
TERMINAL = {finetune_pb2.SUCCEEDED, finetune_pb2.FAILED, finetune_pb2.CANCELLED}


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    head: RayNode
    nodes: list[RayNode] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.head.address

    def add_node(self, name: str, resources: dict[str, float]) -> RayNode:
        before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        node = start_node(head=False, address=self.address, num_cpus=1, resources=resources,
                          env={**self.env, "ZOO_HOME": str(self.root / f"{name}-home")},
                          log=self.root / f"{name}.log")
        self.nodes.append(node)
        wait_for(lambda: len({n["NodeID"] for n in ray.nodes() if n["Alive"]} - before) == 1,
                 timeout=60, every=0.5)
        return node

    def node_ids(self, resource: str) -> set[str]:
        return {n["NodeID"] for n in ray.nodes() if n["Alive"] and resource in n["Resources"]}


@pytest.fixture(scope="module")
def cluster(pretrained_tiny, tmp_path_factory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("ray")
    env = mirror_env(pretrained_tiny, root)
    temp = Path(tempfile.mkdtemp(prefix="zr-"))  # short: Ray's socket paths must fit 107 bytes
    head = start_node(head=True, num_cpus=1, resources={"head": 1},
                      env={**env, "ZOO_HOME": str(root / "head-home")}, temp_dir=temp,
                      log=root / "head.log")
    found = Cluster(root, env, head)
    copies = DATA_ROOT / "datasets"  # the nodes' copies of datasets, in this machine's /tmp
    before = set(copies.iterdir()) if copies.is_dir() else set()
    try:
        ray.init(address=head.address, log_to_driver=False, configure_logging=False)
        found.add_node("node2", {"trainer": 1})
        yield found
    finally:
        ray.shutdown()
        for node in reversed(found.nodes):
            node.stop(5)
        head.stop(10)
        shutil.rmtree(temp, ignore_errors=True)
        for copy in (set(copies.iterdir()) if copies.is_dir() else set()) - before:
            shutil.rmtree(copy, ignore_errors=True)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("digits") / "digits", per_class=20, start=90)


def ray_server(cluster: Cluster, home: Path, *args: str) -> ServerProcess:
    return ServerProcess(home, cluster.env, "--ray", cluster.address, "--model-store",
                         (home.parent / "store").as_uri(), *args)


# --- --ray auto ---------------------------------------------------------------------------


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_ray_auto_starts_a_local_instance_and_stops_it(pretrained_tiny, tmp_path):
    """`--ray auto`: a head node of the server's own, one replica, gone with the server."""
    env = mirror_env(pretrained_tiny, tmp_path)
    server = ServerProcess(tmp_path / "home", env, "--ray", "auto", "--max-jobs", "0")
    stubs = Stubs(server.target)
    try:
        connected = server.event("ray_connected")
        assert connected["local"] and connected["nodes"] == 1
        assert processes_mentioning(connected["session"]), "the head's processes run"
        assert connected["model_store"] == str(tmp_path / "home" / "shared")
        reply = stubs.inference.Classify(inference_pb2.ClassifyRequest(
            model=spec(), images=distinct_images(2)), timeout=300)
        assert len(reply.results) == 2
        info = stubs.models.GetModel(models_pb2.GetModelRequest(model=spec())).model
        assert info.replicas == 1 and info.replica_loads[0].inputs == 2
    finally:
        stubs.close()
        assert server.stop() == 0, "".join(server.raw[-30:])
    wait_for(lambda: not processes_mentioning(connected["session"]), timeout=30)  # stopped
    assert not Path(connected["session"]).exists()


# --- data-parallel feature extraction --------------------------------------------------------


def test_sharded_features_equal_single_process_ones(cluster, digits, tmp_path, monkeypatch):
    """Phase 1's forward pass over two actors on two nodes gives the single process's
    features, and the head trained on them is the same."""
    import zoo
    from zoo.finetuning.image import frozen_features
    from zoo.finetuning.image_data import load_image_dataset
    from zoo.hub.registry import get_spec
    from zoo_server.scale.features import ShardedFeatures

    for name in ("ZOO_MANIFEST", "ZOO_KERAS_MIRROR"):
        monkeypatch.setenv(name, cluster.env[name])
    spec_, size = get_spec(TINY), (32, 32)
    split = load_image_dataset(digits, size, val_split=0.2, seed=0).train
    assert len(split) > 64, "two shards of whole batches"
    sharded = ShardedFeatures(shards=2, min_images=1)
    try:
        features = sharded(spec_, size, split)
        assert set(sharded.nodes) == cluster.node_ids("CPU") and len(set(sharded.nodes)) == 2, \
            "one shard on each node"
        np.testing.assert_allclose(features, frozen_features(spec_, size, split), rtol=1e-6,
                                   atol=1e-6)
        options = dict(epochs=3, image_size=32, learning_rate=3e-3, seed=0, record=False)
        alone = zoo.finetune(TINY, digits, tmp_path / "alone", **options)
        spread = zoo.finetune(TINY, digits, tmp_path / "spread", extract_features=sharded,
                              **options)
    finally:
        sharded.close()
    assert sharded.sharded_calls == 3, "the fine-tune's two splits went through it too"
    assert spread.metrics["accuracy"] == alone.metrics["accuracy"]
    heads = [zoo.load_model(r.output_dir, include_top=True).get_layer("head").get_weights()
             for r in (alone, spread)]
    for a, b in zip(*heads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- inference replicas ---------------------------------------------------------------------


def test_requests_to_one_model_are_answered_by_two_replicas(cluster, tmp_path):
    server = ray_server(cluster, tmp_path / "home", "--replicas", "2", "--replica-cpus", "1",
                        "--max-jobs", "0", "--metrics-port", "0", "--runtime", "openvino")
    stubs = Stubs(server.target)
    try:
        images = distinct_images(8)

        def classify(i: int) -> inference_pb2.ClassifyResponse:
            return stubs.inference.Classify(inference_pb2.ClassifyRequest(
                model=spec(), images=[images[i % 8]], top_k=3), timeout=120)

        classify(0)  # loads the model: two replicas
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(classify, range(64)))
        for i, reply in enumerate(replies):  # whichever replica answered, the same answer
            first = replies[i % 8].results[0].predictions
            assert [p.index for p in reply.results[0].predictions] == [p.index for p in first]
            np.testing.assert_allclose([p.score for p in reply.results[0].predictions],
                                       [p.score for p in first], rtol=1e-5)

        info = stubs.models.GetModel(models_pb2.GetModelRequest(model=spec())).model
        assert info.loaded and info.replicas == 2
        assert info.runtime == "openvino", "the replicas run the model as --runtime says"
        loads = {r.replica: r for r in info.replica_loads}
        assert len(loads) == 2 and all(r.requests > 0 for r in loads.values()), \
            "each replica answered some"
        assert sum(r.inputs for r in loads.values()) == 65
        assert {r.node for r in loads.values()} == cluster.node_ids("CPU"), \
            "one replica on each node"
        metrics = server.metrics()
        assert f'zoo_model_replicas{{model="{TINY}"}} 2.0' in metrics
        assert metrics.count("zoo_replica_requests_total{") == 2

        unloaded = stubs.models.UnloadModel(models_pb2.UnloadModelRequest(model=spec()))
        assert unloaded.was_loaded
        wait_for(lambda: not any(a["name"].startswith("SERVE_REPLICA::")
                                 for a in ray.util.list_named_actors(True)), timeout=60)
        info = stubs.models.GetModel(models_pb2.GetModelRequest(model=spec())).model
        assert not info.loaded and info.replicas == 0
    finally:
        stubs.close()
        assert server.stop() == 0, "".join(server.raw[-30:])


# --- fine-tune jobs ---------------------------------------------------------------------------

EPOCHS = 60


def test_two_jobs_train_at_once_on_two_nodes(cluster, digits, tmp_path):
    """--max-jobs 2 across the cluster: each job reserves a node's one CPU, so Ray puts them
    on different nodes, and they train at the same time."""
    server = ray_server(cluster, tmp_path / "home", "--max-jobs", "2")
    stubs = Stubs(server.target)
    try:
        dataset = stubs.finetune.UploadDataset(iter(upload_requests(zip_folder(digits),
                                                                    finetune_pb2.IMAGE_ZIP)))
        jobs = [stubs.finetune.CreateJob(finetune_pb2.CreateJobRequest(
            base=spec(), dataset_id=dataset.dataset_id, output_name=f"pair-{i}",
            hyperparameters=finetune_pb2.HyperParameters(epochs=2, image_size=32)))
            for i in range(2)]
        finished = [wait_for(lambda job=job: (j := stubs.finetune.GetJob(
            finetune_pb2.GetJobRequest(job_id=job.id))).state in TERMINAL and j, timeout=300,
            every=0.5) for job in jobs]
        assert [j.state for j in finished] == [finetune_pb2.SUCCEEDED] * 2, \
            [j.error for j in finished]
        nodes, began = [], []
        for job in jobs:
            placed = [e for e in list_events(stubs, job.id)
                      if e.message.startswith("running on Ray node")]
            assert len(placed) == 1
            nodes.append(placed[0].message.split()[4])
            began.append(placed[0].time_ms)  # when its actor started on its node
        assert len(set(nodes)) == 2 and set(nodes) <= {n[:12] for n in cluster.node_ids("CPU")}, \
            "one job on each node"
        assert began[0] < finished[1].finished_ms and began[1] < finished[0].finished_ms, \
            "they trained at the same time"
    finally:
        stubs.close()
        assert server.stop() == 0, "".join(server.raw[-30:])


def test_a_job_survives_the_loss_of_its_node(cluster, digits, tmp_path):
    """The job needs a `trainer` node: the second node. Killed mid-job, the job goes on from
    its last checkpoint on a third node, and its model is served at once."""
    home = tmp_path / "home"
    server = ray_server(cluster, home, "--job-resources", "trainer=1", "--max-jobs", "2",
                        "--replica-cpus", "0.5")
    stubs = Stubs(server.target)
    try:
        dataset = stubs.finetune.UploadDataset(iter(upload_requests(zip_folder(digits),
                                                                    finetune_pb2.IMAGE_ZIP)))
        job = stubs.finetune.CreateJob(finetune_pb2.CreateJobRequest(
            base=spec(), dataset_id=dataset.dataset_id, output_name="survivor",
            # Augmented: every epoch runs the base (~0.5 s), so the job is still training when
            # its node is killed (60 epochs on cached features can end within seconds).
            hyperparameters=finetune_pb2.HyperParameters(epochs=EPOCHS, image_size=32,
                                                         patience=0, augment=True)))
        node2 = cluster.node_ids("trainer")
        wait_for(lambda: stubs.finetune.GetJob(finetune_pb2.GetJobRequest(job_id=job.id))
                 .epoch >= 2, timeout=240, every=0.2)
        events = list_events(stubs, job.id)
        placed = [e for e in events if e.message.startswith("running on Ray node")]
        assert len(placed) == 1 and next(iter(node2))[:12] in placed[0].message, \
            "placed on the second node (the only one with `trainer`)"
        store_state = home.parent / "store" / "jobs" / job.id / "checkpoints" / "state.json"
        wait_for(store_state.exists, timeout=30)

        cluster.nodes[0].kill()  # the whole node at once: raylet, agents, the job's worker
        cluster.add_node("node3", {"trainer": 1})
        final = wait_for(lambda: (j := stubs.finetune.GetJob(
            finetune_pb2.GetJobRequest(job_id=job.id))).state in TERMINAL and j, timeout=300,
            every=0.5)
        assert final.state == finetune_pb2.SUCCEEDED, final.error
        assert final.epoch == EPOCHS and final.attempts == 1
        events = list_events(stubs, job.id)
        lost = [i for i, e in enumerate(events) if "node was lost" in e.message]
        assert len(lost) == 1
        resumed = [e for e in events[lost[0]:] if e.message.startswith("running on Ray node")]
        node3 = cluster.node_ids("trainer") - node2
        assert len(resumed) == 1 and next(iter(node3))[:12] in resumed[0].message
        checkpoint = int(resumed[0].message.rpartition("after epoch ")[2])
        assert checkpoint >= 1, "it went on from its checkpoint, not from the start"
        epochs = [e.epoch for e in events[lost[0]:] if e.kind == finetune_pb2.JobEvent.EPOCH]
        assert epochs == list(range(checkpoint + 1, EPOCHS + 1))

        image = sorted((digits / "3").glob("*.png"))[0].read_bytes()
        reply = stubs.inference.Classify(inference_pb2.ClassifyRequest(
            model=spec("survivor"), images=[image]), timeout=180)
        assert reply.model.version == 1 and reply.results[0].predictions
    finally:
        stubs.close()
        assert server.stop() == 0, "".join(server.raw[-30:])


def list_events(stubs: Stubs, job_id: str) -> list[finetune_pb2.JobEvent]:
    """The job's events so far (WatchJob replays them, then waits for more: cut it short)."""
    import grpc

    events: list[finetune_pb2.JobEvent] = []
    try:
        for event in stubs.finetune.WatchJob(finetune_pb2.WatchJobRequest(job_id=job_id),
                                             timeout=3):
            events.append(event)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    return events
