"""Issue 13's load-and-fault test: 32 clients classify images whose answers are known while
uploads stall, a watcher follows a fine-tune job, and the job's worker is killed (SIGKILL);
the health check is polled throughout.

Every Classify answer must be right (batching under load never mixes two requests' images),
every health check SERVING (its worst latency is printed), every stalled upload ended by the
idle limit, the job FAILED naming the signal, and the watcher, resumed across the streams the
server ends while the job is quiet, must see each event once, up to the final state.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import TINY
from tests.digits import write_digits
from tests.serving import (
    SLOW_JOB,
    ServerProcess,
    Stubs,
    distinct_images,
    mirror_env,
    spec,
    upload_requests,
    wait_for,
    zip_folder,
)
from zoo_api.v1 import finetune_pb2, inference_pb2
from zoo_client import ZooClient

pytestmark = pytest.mark.slow
CLIENTS = 32
STALLERS = 12  # with the watcher, below --max-streams (16): none of them is refused
IDLE_S = 2
LOAD_AFTER_KILL_S = 3


def known_answers(stubs: Stubs, images: list[bytes]) -> dict[bytes, str]:
    """Images whose top-1 label is clear, with that label, classified one at a time. The tiny
    test model's probabilities are flat (about 1/1000 each), so "clear" is a margin of 1e-6
    over the second: still thousands of times what a batch's other rounding moves (float32
    at these values: about 1e-10)."""
    answers = {}
    for image in images:
        top = stubs.inference.Classify(inference_pb2.ClassifyRequest(
            model=spec(), images=[image], top_k=2), timeout=60).results[0].predictions
        if top[0].score - top[1].score > 1e-6:
            answers[image] = top[0].label
    assert len(answers) >= 8 and len(set(answers.values())) >= 2
    return answers


class Load:
    """The threads of the test, each recording what it saw until `stop`."""

    def __init__(self, stubs: Stubs, answers: dict[bytes, str]):
        self.stubs, self.answers = stubs, answers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.classified = self.wrong = 0
        self.errors: list[str] = []
        self.health_worst = 0.0
        self.health_checks = 0
        self.stalls: list[str] = []
        self.threads = [threading.Thread(target=self.classify, args=(i,)) for i in range(CLIENTS)]
        self.threads.append(threading.Thread(target=self.health))
        self.threads += [threading.Thread(target=self.stall) for _ in range(STALLERS)]
        for thread in self.threads:
            thread.start()

    def classify(self, seed: int) -> None:
        rng = random.Random(seed)
        images = list(self.answers)
        while not self.stop.is_set():
            batch = rng.sample(images, rng.randint(1, 3))
            try:
                results = self.stubs.inference.Classify(inference_pb2.ClassifyRequest(
                    model=spec(), images=batch), timeout=30).results
            except grpc.RpcError as e:
                with self.lock:
                    self.errors.append(f"Classify: {e.code().name} {e.details()}")
                continue
            wrong = sum(r.predictions[0].label != self.answers[image]
                        for r, image in zip(results, batch, strict=True))
            with self.lock:
                self.classified += len(batch)
                self.wrong += wrong

    def health(self) -> None:
        check = health_pb2_grpc.HealthStub(self.stubs.channel).Check
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                status = check(health_pb2.HealthCheckRequest(), timeout=5).status
                if status != health_pb2.HealthCheckResponse.SERVING:
                    with self.lock:
                        self.errors.append(f"health: {status}")
            except grpc.RpcError as e:
                with self.lock:
                    self.errors.append(f"health: {e.code().name}")
            self.health_worst = max(self.health_worst, time.perf_counter() - started)
            self.health_checks += 1
            self.stop.wait(0.05)

    def stall(self) -> None:
        header = finetune_pb2.DatasetHeader(format=finetune_pb2.IMAGE_ZIP, sha256="0" * 64,
                                            size=1 << 20)
        never = threading.Event()
        while not self.stop.is_set():
            def requests():  # the header, then silence until the server ends the call
                yield finetune_pb2.UploadDatasetRequest(header=header)
                never.wait(60)

            try:
                self.stubs.finetune.UploadDataset(requests(), timeout=60)
                outcome = "OK"
            except grpc.RpcError as e:
                outcome = e.code().name
            with self.lock:
                self.stalls.append(outcome)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=90)


def test_answers_stay_right_and_health_answers_while_uploads_stall_and_a_job_dies(
        pretrained_tiny, tmp_path):
    env = mirror_env(pretrained_tiny, tmp_path)
    server = ServerProcess(tmp_path / "home", env, "--preload", TINY, "--max-jobs", "1",
                           "--stream-idle", str(IDLE_S))
    stubs = Stubs(server.target)
    load = None
    try:
        digits = write_digits(tmp_path / "digits", per_class=10, start=90)
        dataset = stubs.finetune.UploadDataset(iter(upload_requests(
            zip_folder(digits, "digits/"), finetune_pb2.IMAGE_ZIP)))
        answers = known_answers(stubs, distinct_images(40, seed=11))
        job = stubs.finetune.CreateJob(finetune_pb2.CreateJobRequest(
            base=spec(), dataset_id=dataset.dataset_id, output_name="killed",
            hyperparameters=finetune_pb2.HyperParameters(**SLOW_JOB)))
        events = []

        def watch() -> None:
            with ZooClient(server.target) as zoo:
                events.extend(zoo.watch_job(job.id, timeout=240))

        watcher = threading.Thread(target=watch)
        watcher.start()
        load = Load(stubs, answers)
        # Kill the worker once it is at work: it has reported an event of its own.
        started = wait_for(lambda: next((e for e in server.lines if e.get("event") ==
                                         "job_started"), None), timeout=120)
        wait_for(lambda: [e for e in events if e.kind != "state"], timeout=180, every=0.2)
        os.kill(started["pid"], signal.SIGKILL)
        watcher.join(timeout=60)
        time.sleep(LOAD_AFTER_KILL_S)
        load.join()
        final = stubs.finetune.GetJob(finetune_pb2.GetJobRequest(job_id=job.id))
    finally:
        if load is not None:
            load.join()
        stubs.close()
        assert server.stop() == 0, "".join(server.raw[-20:])

    print(f"{load.classified} images classified by {CLIENTS} clients, {load.wrong} wrong; "
          f"{load.health_checks} health checks, the slowest {load.health_worst * 1000:.0f} ms; "
          f"{len(load.stalls)} stalled uploads ended")
    assert load.errors == []
    assert load.wrong == 0 and load.classified >= CLIENTS
    assert load.stalls and set(load.stalls) == {"DEADLINE_EXCEEDED"}
    assert final.state == finetune_pb2.FAILED and "killed by signal 9" in final.error
    assert events[-1].state == "failed" and "killed by signal 9" in events[-1].message
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), "the watcher saw every event once"
    assert [e.state for e in events if e.kind == "state"] == ["queued", "running", "failed"]
