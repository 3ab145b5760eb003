"""The server's parts without a server: the batcher, the status table, names, config,
archive member checks. Fast: no TensorFlow, no sockets."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from zoo.errors import (
    ChecksumMismatchError,
    InvalidInputError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    WeightsNotFoundError,
    ZooError,
)
from zoo_server.batching import Batcher
from zoo_server.config import ServerConfig
from zoo_server.datasets import member_parts
from zoo_server.errors import (
    STATUS_TABLE,
    JobStateError,
    ModelLoadingError,
    ModelUnloadedError,
    NotFoundError,
    QueueFullError,
    RequestCancelledError,
    RequestDeadlineError,
    status_for,
)
from zoo_server.names import check_dataset_id, check_lookup_name, check_output_name


def doubling(calls: list[int], delay: float = 0.0):
    def run(xs):
        calls.append(len(xs))
        time.sleep(delay)
        return np.array(xs) * 2

    return run


@pytest.mark.parametrize("threads", [1, 2])
def test_batcher_scatters_each_request_its_own_results_and_forms_batches(threads):
    calls: list[int] = []
    batcher = Batcher("m", doubling(calls, 0.01), max_batch=8, max_delay_s=0.005, max_queue=100,
                      threads=threads)
    try:
        def client(i: int) -> list[int]:
            return list(batcher.submit([i, i + 1000]).result(timeout=10))

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(client, range(64)))
        assert results == [[2 * i, 2 * (i + 1000)] for i in range(64)]
        assert max(calls) > 2 and all(n <= 8 for n in calls) and sum(calls) == 128
    finally:
        batcher.close()


def test_batcher_with_two_threads_runs_two_batches_at_once():
    both_running = threading.Barrier(2, timeout=5)
    calls: list[list[int]] = []

    def run(xs):
        calls.append(list(xs))
        both_running.wait()  # only returns when the other batch is in flight too
        return np.array(xs) * 2

    batcher = Batcher("m", run, max_batch=2, max_delay_s=0, max_queue=64, threads=2)
    try:
        first = batcher.submit([1, 2])
        second = batcher.submit([3, 4])
        assert list(first.result(5)) == [2, 4] and list(second.result(5)) == [6, 8]
        assert sorted(calls) == [[1, 2], [3, 4]] and batcher.batches == 2
    finally:
        batcher.close()
    assert not any(thread.is_alive() for thread in batcher._threads)
    with pytest.raises(ModelUnloadedError):
        batcher.submit([1])


def test_batcher_runs_a_lone_request_without_waiting():
    batcher = Batcher("m", doubling([]), max_batch=32, max_delay_s=1.0, max_queue=64)
    try:
        started = time.perf_counter()
        assert list(batcher.submit([1]).result(timeout=5)) == [2]
        assert time.perf_counter() - started < 0.5
    finally:
        batcher.close()


def test_batcher_splits_a_request_larger_than_a_batch():
    calls: list[int] = []
    batcher = Batcher("m", doubling(calls), max_batch=4, max_delay_s=0, max_queue=64)
    try:
        assert list(batcher.submit(list(range(10))).result(timeout=5)) == [2 * i for i in range(10)]
        assert calls == [4, 4, 2]
    finally:
        batcher.close()


def test_batcher_refuses_past_its_queue_and_drops_dead_work():
    gate = threading.Event()

    def blocked(xs):
        gate.wait(10)
        return np.array(xs)

    batcher = Batcher("m", blocked, max_batch=2, max_delay_s=0, max_queue=4)
    try:
        running = batcher.submit([0, 1])
        time.sleep(0.1)  # the batcher is now busy with it
        expired = batcher.submit([2], deadline=time.monotonic() + 0.01)
        cancelled = batcher.submit([3], is_active=lambda: False)
        kept = batcher.submit([4, 5])
        with pytest.raises(QueueFullError, match="queue is full"):
            batcher.submit([6])
        time.sleep(0.05)
        gate.set()
        assert list(running.result(5)) == [0, 1] and list(kept.result(5)) == [4, 5]
        with pytest.raises(RequestDeadlineError):
            expired.result(5)
        with pytest.raises(RequestCancelledError):
            cancelled.result(5)
    finally:
        gate.set()
        batcher.close()
    with pytest.raises(ModelUnloadedError):
        batcher.submit([1])


def test_batcher_gives_every_request_of_a_failed_batch_the_error():
    def broken(xs):
        raise InvalidInputError("bad batch")

    batcher = Batcher("m", broken, max_batch=4, max_delay_s=0, max_queue=8)
    try:
        with pytest.raises(InvalidInputError, match="bad batch"):
            batcher.submit([1]).result(5)
        assert batcher.submit  # still running
    finally:
        batcher.close()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ModelNotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (WeightsNotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (NotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (InvalidInputError("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (ChecksumMismatchError("x"), grpc.StatusCode.DATA_LOSS),
        (OfflineError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (NetworkError("x"), grpc.StatusCode.UNAVAILABLE),
        (QueueFullError("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ModelLoadingError("x"), grpc.StatusCode.UNAVAILABLE),
        (JobStateError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (RequestDeadlineError("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (ZooError("x"), grpc.StatusCode.INTERNAL),
        (KeyError("secret detail"), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_table(error, code):
    got, message = status_for(error)
    assert got == code
    assert "secret detail" not in message  # unexpected errors do not leak internals


def test_status_table_lists_subclasses_before_their_bases():
    kinds = [kind for kind, _ in STATUS_TABLE]
    for i, kind in enumerate(kinds):
        for later in kinds[i + 1:]:
            assert not issubclass(later, kind) or later is kind, f"{later} is shadowed by {kind}"


@pytest.mark.parametrize("name", ["digits", "digits-v2", "a.b_c", "X" * 64, "0model"])
def test_good_output_names(name):
    assert check_output_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "/abs", "a\\b", "-x", "X" * 65,
                                  "a b", "caf\u00e9", "x\0"])
def test_bad_output_names(name):
    with pytest.raises(InvalidInputError):
        check_output_name(name)


@pytest.mark.parametrize("name", ["", "  ", "../etc", "a/b", ".hidden", "a\\b", "x\0y", "x" * 201])
def test_lookup_names_are_never_paths(name):
    with pytest.raises(InvalidInputError):
        check_lookup_name(name)
    with pytest.raises(InvalidInputError):
        check_dataset_id(name)


@pytest.mark.parametrize(
    ("member", "parts"),
    [("a/b.png", ["a", "b.png"]), ("./a//b.png", ["a", "b.png"]), ("a\\b.png", ["a", "b.png"]),
     ("dir/", ["dir"])],
)
def test_archive_members_inside(member, parts):
    assert member_parts(member) == parts


@pytest.mark.parametrize("member", ["../evil", "a/../../evil", "/etc/passwd", "C:/x", "a\\..\\..\\x",
                                    "a/\0b"])
def test_archive_members_escaping_are_refused(member):
    with pytest.raises(InvalidInputError):
        member_parts(member)


def test_config_from_environment_and_flags():
    env = {"ZOO_SERVE_MAX_BATCH_SIZE": "8", "ZOO_SERVE_MAX_QUEUE_DELAY_MS": "2.5",
           "ZOO_TOKEN": "s3cret", "ZOO_SERVE_PRELOAD": "a, b"}
    config = ServerConfig.from_env(env, max_jobs=3, max_batch_size=None)
    assert config.max_batch_size == 8 and config.max_queue_delay_ms == 2.5
    assert config.token == "s3cret" and config.preload == ("a", "b") and config.max_jobs == 3
    assert "s3cret" not in repr(config)
    assert ServerConfig.from_env(env, max_batch_size=16).max_batch_size == 16
    with pytest.raises(InvalidInputError, match="not a number"):
        ServerConfig.from_env({"ZOO_SERVE_MAX_QUEUE": "lots"})
    with pytest.raises(InvalidInputError, match="tls"):
        ServerConfig(tls_cert=__import__("pathlib").Path("cert.pem"))
    with pytest.raises(InvalidInputError, match="max_batch_size"):
        ServerConfig(max_batch_size=0)


def test_batcher_survives_work_its_waiter_already_gave_up_on():
    gate = threading.Event()

    def blocked(xs):
        gate.wait(10)
        return np.array(xs)

    batcher = Batcher("m", blocked, max_batch=1, max_delay_s=0, max_queue=8)
    try:
        busy = batcher.submit([0])
        time.sleep(0.05)
        expired = batcher.submit([1], deadline=time.monotonic())  # dead on arrival...
        assert expired.cancel()  # ...and its waiter timed out and cancelled it, as wait_result does
        gate.set()
        assert list(busy.result(5)) == [0]
        assert list(batcher.submit([2]).result(5)) == [2], "the batcher thread is still alive"
    finally:
        gate.set()
        batcher.close()


def test_closing_a_batcher_fails_what_it_can_no_longer_run():
    gate = threading.Event()
    batcher = Batcher("m", lambda xs: (gate.wait(10), np.array(xs))[1], max_batch=1,
                      max_delay_s=0, max_queue=8)
    running = batcher.submit([0])
    time.sleep(0.05)
    queued = batcher.submit([1])
    closer = threading.Thread(target=batcher.close)
    closer.start()
    gate.set()
    closer.join(10)
    assert list(running.result(5)) == [0] and list(queued.result(5)) == [1]  # drained first
    with pytest.raises(ModelUnloadedError):
        batcher.submit([2])


# --- the model manager: LRU under a memory budget, loads in the background -------------------


def fake_manager(budget_mb: int, build_seconds: float = 0.0, **config):
    """A manager whose loader builds an identity model of the spec's size, slowly if asked."""
    import dataclasses

    from zoo.hub.registry import get_spec
    from zoo_server.loaders import CLASSIFY, Built, Loader
    from zoo_server.manager import ModelManager
    from zoo_server.store import Resolved

    class SlowIdentity(Loader):
        kind = CLASSIFY

        def build(self, resolved):
            time.sleep(build_seconds)
            return Built(None, lambda xs: xs, resolved.spec.params * 4)

    manager = ModelManager(ServerConfig(memory_budget_mb=budget_mb, **config),
                           loaders={CLASSIFY: SlowIdentity()})
    spec = get_spec("mobilenet_v2_035_96")

    def model(name: str, mb: int = 1) -> Resolved:
        fake = dataclasses.replace(spec, name=name, params=mb * 2**20 // 4)
        return Resolved(name, 0, "registry", fake.task, fake)

    return manager, model


def test_manager_evicts_the_least_recently_used_idle_model(monkeypatch):
    manager, model = fake_manager(budget_mb=3)
    a, b, c, d = (model(n) for n in "abcd")
    try:
        for m in (a, b, c):
            manager.release(manager.acquire("classify", m))
        manager.release(manager.acquire("classify", a))  # a is now the most recent
        held = manager.acquire("classify", b)  # in use: cannot be evicted
        manager.release(manager.acquire("classify", d))
        assert {k[1] for k in manager.loaded_keys()} == {"a", "b", "d"}, "c was the LRU idle one"
        from zoo_server.errors import MemoryBudgetError

        with pytest.raises(MemoryBudgetError, match="more than the whole memory budget"):
            manager.acquire("classify", model("huge", mb=10))
        busy = [manager.acquire("classify", m) for m in (a, d)]
        with pytest.raises(MemoryBudgetError, match="held by models in use"):
            manager.acquire("classify", model("e"))
        for loaded in (held, *busy):
            manager.release(loaded)
        assert manager.unload("a", 0) and not manager.unload("a", 0)
    finally:
        manager.close()


def test_a_request_waits_for_a_loading_model_then_gets_unavailable(monkeypatch):
    manager, model = fake_manager(budget_mb=8, build_seconds=0.6, load_wait_s=0.1)
    slow = model("slow")
    try:
        with pytest.raises(ModelLoadingError, match="still loading"):
            manager.acquire("classify", slow)
        time.sleep(0.7)
        manager.release(manager.acquire("classify", slow))  # loaded meanwhile, in the background
        assert manager.is_loaded("slow", 0)
    finally:
        manager.close()
