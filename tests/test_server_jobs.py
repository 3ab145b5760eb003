"""FineTuneService end to end: uploads (safe extraction, limits, interrupted streams), jobs
in worker processes, WatchJob, cancellation, the model store, and resuming after the
server is killed."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import grpc
import pytest

from tests.archives import folders_tar, folders_zip, metadata_bomb, tar_bytes, valid_members
from tests.conftest import TINY
from tests.digits import write_digits
from tests.serving import (
    SLOW_JOB,
    ServerProcess,
    Stubs,
    leftovers,
    mirror_env,
    spec,
    upload_requests,
    wait_for,
    zip_folder,
)
from zoo_api.v1 import finetune_pb2, inference_pb2, models_pb2

pytestmark = pytest.mark.slow
FAST = finetune_pb2.HyperParameters(epochs=3, image_size=32, learning_rate=3e-3, patience=0)
IMAGE_ZIP, IMAGE_TAR = finetune_pb2.IMAGE_ZIP, finetune_pb2.IMAGE_TAR
TEXT_CSV, TEXT_JSONL = finetune_pb2.TEXT_CSV, finetune_pb2.TEXT_JSONL
TERMINAL = {finetune_pb2.SUCCEEDED, finetune_pb2.FAILED, finetune_pb2.CANCELLED}


@pytest.fixture(scope="module")
def served(pretrained_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    env = mirror_env(pretrained_tiny, root)
    server = ServerProcess(root / "home", env, "--max-jobs", "1", "--max-upload-mb", "3",
                           "--max-extract-mb", "16", "--max-extract-files", "300")
    stubs = Stubs(server.target)
    try:
        yield server, stubs, root, env
    finally:
        stubs.close()
        assert server.stop() == 0, "".join(server.raw[-20:])


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("data") / "digits", per_class=20, start=90)


@pytest.fixture(scope="module")
def dataset_id(served, digits) -> str:
    stubs = served[1]
    response = stubs.finetune.UploadDataset(iter(upload_requests(zip_folder(digits, "digits/"),
                                                                 IMAGE_ZIP)))
    return str(response.dataset_id)


def rpc_error(call, request, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        response = call(request, **kwargs)
        if hasattr(response, "__iter__") and not hasattr(response, "DESCRIPTOR"):
            list(response)
    return info.value


def wait_job(stubs: Stubs, job_id: str, timeout: float = 240) -> finetune_pb2.Job:
    return wait_for(lambda: (j := stubs.finetune.GetJob(finetune_pb2.GetJobRequest(job_id=job_id)))
                    .state in TERMINAL and j, timeout=timeout, every=0.3)


# --- uploads ---------------------------------------------------------------------------------


def test_upload_zip_tar_and_text(served, digits, dataset_id):
    stubs = served[1]
    listed = stubs.finetune.UploadDataset(iter(upload_requests(zip_folder(digits, "digits/"),
                                                               IMAGE_ZIP)))
    assert listed.dataset_id == dataset_id, "the same bytes are stored once"
    assert listed.examples == 200 and list(listed.classes) == [str(d) for d in range(10)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(digits, arcname=".")
    tarred = stubs.finetune.UploadDataset(iter(upload_requests(buf.getvalue(), IMAGE_TAR)))
    assert tarred.dataset_id != dataset_id and tarred.examples == 200
    csv = "text,label\nwhat a great film,pos\nawful acting,neg\n\"loved it, truly\",pos\n"
    text = stubs.finetune.UploadDataset(iter(upload_requests(csv.encode(), TEXT_CSV)))
    assert text.examples == 3 and list(text.classes) == ["neg", "pos"]
    jsonl = "\n".join(json.dumps({"text": t, "label": lab}) for t, lab in
                      [("great", "pos"), ("bad", "neg"), ("fine", 1)])
    assert stubs.finetune.UploadDataset(iter(upload_requests(jsonl.encode(), TEXT_JSONL))
                                        ).classes == ["1", "neg", "pos"]


def evil_zip(member: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/1.png", b"x")
        zf.writestr("b/1.png", b"x")
        zf.writestr(member, b"owned")
    return buf.getvalue()


def tar_with(kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("a/1.png", "b/1.png"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        info = tarfile.TarInfo("a/link.png")
        info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                     "device": tarfile.CHRTYPE}[kind]
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    return buf.getvalue()


def symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/1.png", b"x")
        link = zipfile.ZipInfo("b/evil.png")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    return buf.getvalue()


def many_files_zip(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            zf.writestr(f"{'ab'[i % 2]}/{i}.png", b"x")
    return buf.getvalue()


def bomb_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("a/1.png", "b/1.png"):
            zf.writestr(name, b"\0" * (20 * 2**20))  # 40 MiB from ~40 KiB
    return buf.getvalue()


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("no header", grpc.StatusCode.INVALID_ARGUMENT, "first UploadDatasetRequest"),
        ("sha256 mismatch", grpc.StatusCode.INVALID_ARGUMENT, "sha256 mismatch"),
        ("short stream", grpc.StatusCode.INVALID_ARGUMENT, "ended after"),
        ("over the size limit", grpc.StatusCode.RESOURCE_EXHAUSTED, "over the server's limit"),
        ("bad format", grpc.StatusCode.INVALID_ARGUMENT, "format"),
        ("dot-dot member", grpc.StatusCode.INVALID_ARGUMENT, r"\.\./evil.*escapes"),
        ("absolute member", grpc.StatusCode.INVALID_ARGUMENT, "absolute path"),
        ("zip symlink", grpc.StatusCode.INVALID_ARGUMENT, "symbolic link"),
        ("tar symlink", grpc.StatusCode.INVALID_ARGUMENT, "link"),
        ("tar hardlink", grpc.StatusCode.INVALID_ARGUMENT, "link"),
        ("tar device", grpc.StatusCode.INVALID_ARGUMENT, "device"),
        ("zip bomb", grpc.StatusCode.INVALID_ARGUMENT, "zip bomb"),
        ("too many files", grpc.StatusCode.INVALID_ARGUMENT, "more than 300 members"),
        ("tar of folders", grpc.StatusCode.INVALID_ARGUMENT, "more than 300 members"),
        ("zip of folders", grpc.StatusCode.INVALID_ARGUMENT, "more than 300 members"),
        ("300 MiB long name", grpc.StatusCode.INVALID_ARGUMENT, "314,572,800-byte long-name"),
        ("not a zip", grpc.StatusCode.INVALID_ARGUMENT, "not a readable zip"),
        ("one class", grpc.StatusCode.INVALID_ARGUMENT, "at least 2"),
        ("csv without label", grpc.StatusCode.INVALID_ARGUMENT, "text,label"),
        ("csv not utf-8", grpc.StatusCode.INVALID_ARGUMENT, "not UTF-8"),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(served, case, code, message):
    server, stubs, root, _ = served
    before = set(leftovers(server.home))
    data, fmt, kwargs = {
        "no header": (b"", IMAGE_ZIP, {}),
        "sha256 mismatch": (evil_zip("c/1.png"), IMAGE_ZIP, {"sha256": "0" * 64}),
        "short stream": (evil_zip("c/1.png"), IMAGE_ZIP, {"size": 10**6}),
        "over the size limit": (b"x" * 100, IMAGE_ZIP, {"size": 4 * 2**20}),
        "bad format": (b"x", 99, {}),
        "dot-dot member": (evil_zip("../evil.png"), IMAGE_ZIP, {}),
        "absolute member": (evil_zip("/tmp/evil.png"), IMAGE_ZIP, {}),
        "zip symlink": (symlink_zip(), IMAGE_ZIP, {}),
        "tar symlink": (tar_with("symlink"), IMAGE_TAR, {}),
        "tar hardlink": (tar_with("hardlink"), IMAGE_TAR, {}),
        "tar device": (tar_with("device"), IMAGE_TAR, {}),
        "zip bomb": (bomb_zip(), IMAGE_ZIP, {}),
        "too many files": (many_files_zip(400), IMAGE_ZIP, {}),
        "tar of folders": (folders_tar(300), IMAGE_TAR, {}),
        "zip of folders": (folders_zip(300), IMAGE_ZIP, {}),
        "300 MiB long name": (metadata_bomb(root / "bomb.tar.gz", 300 * 2**20).read_bytes(),
                              IMAGE_TAR, {}),
        "not a zip": (b"PK but not really a zip file", IMAGE_ZIP, {}),
        "one class": (zip_folder(write_digits(root / "one", classes=(1,), per_class=3)),
                      IMAGE_ZIP, {}),
        "csv without label": (b"text,category\nhello,x\n", TEXT_CSV, {}),
        "csv not utf-8": (b"text,label\n\xff\xfe,x\n", TEXT_CSV, {}),
    }[case]
    requests = upload_requests(data, fmt, **kwargs)
    if case == "no header":
        requests = [finetune_pb2.UploadDatasetRequest(chunk=b"abc")]
    error = rpc_error(stubs.finetune.UploadDataset, iter(requests))
    assert error.code() == code, error.details()
    assert re.search(message, error.details()), error.details()
    assert len(error.details()) < 1000 and str(server.home) not in error.details()
    assert set(leftovers(server.home)) == before
    assert not (server.home / "evil.png").exists() and not (server.home.parent / "evil.png").exists()


def test_interrupted_upload_leaves_nothing(served, digits):
    server, stubs = served[0], served[1]
    before = set(leftovers(server.home))
    data = zip_folder(digits) * 2
    parts = upload_requests(data, IMAGE_ZIP, chunk=16 * 1024)
    sent = threading.Event()
    release = threading.Event()

    def stream():
        for i, part in enumerate(parts):
            if i == len(parts) // 2:
                sent.set()
                release.wait(30)
                return
            yield part

    future = stubs.finetune.UploadDataset.future(stream())
    assert sent.wait(30)
    wait_for(lambda: list((server.home / "tmp").glob("upload-*.part")), timeout=10)
    future.cancel()
    release.set()
    wait_for(lambda: set(leftovers(server.home)) == before, timeout=15)
    assert future.cancelled() or future.exception() is not None


# --- jobs ------------------------------------------------------------------------------------


def test_create_job_errors(served, dataset_id):
    stubs = served[1]
    csv = stubs.finetune.UploadDataset(iter(upload_requests(b"text,label\na,x\nb,y\n", TEXT_CSV)))
    cases = [
        (dict(base=spec("resnet5")), grpc.StatusCode.NOT_FOUND, "resnet5"),
        (dict(dataset_id="ds_0000000000000000"), grpc.StatusCode.NOT_FOUND, "no dataset"),
        (dict(dataset_id="../../etc"), grpc.StatusCode.NOT_FOUND, "no dataset"),
        (dict(dataset_id="d" * 2**20), grpc.StatusCode.NOT_FOUND, "(1,048,576 characters)"),
        (dict(output_name="../escape"), grpc.StatusCode.INVALID_ARGUMENT, "not a valid model name"),
        (dict(output_name="a/b"), grpc.StatusCode.INVALID_ARGUMENT, "not a valid model name"),
        (dict(output_name=""), grpc.StatusCode.INVALID_ARGUMENT, "output_name"),
        (dict(output_name="vgg16"), grpc.StatusCode.INVALID_ARGUMENT, "registry model"),
        (dict(hyperparameters=finetune_pb2.HyperParameters(epochs=0)),
         grpc.StatusCode.INVALID_ARGUMENT, "epochs"),
        (dict(hyperparameters=finetune_pb2.HyperParameters(image_size=8)),
         grpc.StatusCode.INVALID_ARGUMENT, "image_size"),
        (dict(hyperparameters=finetune_pb2.HyperParameters(val_split=1.5)),
         grpc.StatusCode.INVALID_ARGUMENT, "val_split"),
        (dict(dataset_id=csv.dataset_id), grpc.StatusCode.INVALID_ARGUMENT, "holds text"),
        (dict(base=spec("minilm_l6_v2"), hyperparameters=finetune_pb2.HyperParameters(
            image_size=64)), grpc.StatusCode.INVALID_ARGUMENT, "image"),
    ]
    for change, code, message in cases:
        request = finetune_pb2.CreateJobRequest(base=spec(), dataset_id=dataset_id,
                                                output_name="ok", hyperparameters=FAST)
        for key, value in change.items():
            if isinstance(value, str):
                setattr(request, key, value)
            else:
                getattr(request, key).CopyFrom(value)
        error = rpc_error(stubs.finetune.CreateJob, request)
        assert error.code() == code and message in error.details(), (change, error.details()[:300])
        assert len(error.details()) < 1000
    for call, request in [
        (stubs.finetune.GetJob, finetune_pb2.GetJobRequest(job_id="job_0000000000000000")),
        (stubs.finetune.GetJob, finetune_pb2.GetJobRequest(job_id="no-such-job")),
        (stubs.finetune.CancelJob, finetune_pb2.CancelJobRequest(job_id="nope")),
        (stubs.finetune.WatchJob, finetune_pb2.WatchJobRequest(job_id="nope")),
    ]:
        assert rpc_error(call, request).code() == grpc.StatusCode.NOT_FOUND


def test_delete_dataset_over_grpc_and_the_client(served):
    from zoo_client import ZooClient
    from zoo_client.errors import ModelNotFound

    server, stubs = served[0], served[1]
    data = tar_bytes(valid_members(5))
    uploaded = stubs.finetune.UploadDataset(iter(upload_requests(data, IMAGE_TAR)))
    folder = server.home / "datasets" / uploaded.dataset_id
    assert folder.is_dir()
    deleted = stubs.finetune.DeleteDataset(
        finetune_pb2.DeleteDatasetRequest(dataset_id=uploaded.dataset_id))
    assert deleted.dataset_id == uploaded.dataset_id and deleted.size == len(data)
    assert not folder.exists()
    for dataset_id in (uploaded.dataset_id, "ds_0000000000000000", "x" * 2**20):
        error = rpc_error(stubs.finetune.DeleteDataset,
                          finetune_pb2.DeleteDatasetRequest(dataset_id=dataset_id))
        assert error.code() == grpc.StatusCode.NOT_FOUND and len(error.details()) < 1000
    error = rpc_error(stubs.finetune.CreateJob, finetune_pb2.CreateJobRequest(
        base=spec(), dataset_id=uploaded.dataset_id, output_name="gone"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    again = stubs.finetune.UploadDataset(iter(upload_requests(data, IMAGE_TAR)))
    with ZooClient(server.target) as client:
        assert client.delete_dataset(again.dataset_id) == len(data)
        with pytest.raises(ModelNotFound):
            client.delete_dataset(again.dataset_id)


def test_list_jobs_with_an_undefined_state_is_invalid_argument(served):
    stubs = served[1]
    for state in (77, -1):
        error = rpc_error(stubs.finetune.ListJobs, finetune_pb2.ListJobsRequest(state=state))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert f"state {state} is not a job state" in error.details()


def test_job_trains_and_its_model_is_served_at_once(served, digits, dataset_id, monkeypatch):
    stubs = served[1]
    job = stubs.finetune.CreateJob(finetune_pb2.CreateJobRequest(
        base=spec(), dataset_id=dataset_id, output_name="digits", hyperparameters=FAST))
    assert job.state == finetune_pb2.QUEUED and job.epochs == 3 and job.id.startswith("job_")
    events = list(stubs.finetune.WatchJob(finetune_pb2.WatchJobRequest(job_id=job.id)))
    states = [e.state for e in events if e.kind == finetune_pb2.JobEvent.STATE]
    assert states == [finetune_pb2.QUEUED, finetune_pb2.RUNNING, finetune_pb2.SUCCEEDED]
    # Phase 1 is fitted to its optimum at once: one EPOCH event, at the phase's last epoch.
    assert [e.epoch for e in events if e.kind == finetune_pb2.JobEvent.EPOCH] == [3]
    assert "head fitted to its optimum" in next(
        e for e in events if e.kind == finetune_pb2.JobEvent.EPOCH).message
    epoch = next(e for e in events if e.kind == finetune_pb2.JobEvent.EPOCH)
    assert epoch.loss > 0 and "val_accuracy" in epoch.metrics and epoch.epochs == 3
    assert any(e.kind == finetune_pb2.JobEvent.PHASE for e in events)
    done = stubs.finetune.GetJob(finetune_pb2.GetJobRequest(job_id=job.id))
    assert done.state == finetune_pb2.SUCCEEDED and done.attempts == 1 and done.epoch == 3
    assert done.result.name == "digits" and done.result.version == 1
    assert done.metrics["accuracy"] > 0.5 and done.finished_ms >= done.started_ms > 0

    # Servable at once, with no restart: by name (latest) and by version.
    sevens = sorted((digits / "7").glob("*.png"))[:5]
    response = stubs.inference.Classify(inference_pb2.ClassifyRequest(
        model=spec("digits"), images=[p.read_bytes() for p in sevens], top_k=2))
    assert response.model.version == 1
    assert sum(r.predictions[0].label == "7" for r in response.results) >= 3
    info = stubs.models.GetModel(models_pb2.GetModelRequest(model=spec("digits"))).model
    assert info.origin == models_pb2.ModelInfo.FINETUNED and info.version == 1
    assert list(info.labels) == [str(d) for d in range(10)] and info.base == TINY
    # Its card: the served file, and the validation confusion matrix (rows: true classes).
    assert info.source == "finetuned" and info.size_bytes > 0
    assert [f.name for f in info.files] == ["model.keras"] and info.files[0].cached
    matrix = [list(row.counts) for row in info.confusion_matrix]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == info.metrics["examples"] > 0
    embedded = stubs.inference.Embed(inference_pb2.EmbedRequest(model=spec("digits"),
                                                                images=[sevens[0].read_bytes()]))
    assert embedded.dimension == 1280

    # A second job under the same name is version 2; version 0 means the latest.
    second = stubs.finetune.CreateJob(finetune_pb2.CreateJobRequest(
        base=spec(), dataset_id=dataset_id, output_name="digits",
        hyperparameters=finetune_pb2.HyperParameters(epochs=1, image_size=32)))
    assert wait_job(stubs, second.id).result.version == 2
    latest = stubs.inference.Classify(inference_pb2.ClassifyRequest(
        model=spec("digits"), images=[sevens[0].read_bytes()]))
    first = stubs.inference.Classify(inference_pb2.ClassifyRequest(
        model=spec("digits", 1), images=[sevens[0].read_bytes()]))
    assert latest.model.version == 2 and first.model.version == 1
    listed = stubs.models.ListModels(models_pb2.ListModelsRequest(pattern="digits")).models
    assert [(m.name, m.version) for m in listed] == [("digits", 1), ("digits", 2)]
    error = rpc_error(stubs.inference.Classify, inference_pb2.ClassifyRequest(
        model=spec("digits", 7), images=[sevens[0].read_bytes()]))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "versions: 1, 2" in error.details()
    error = rpc_error(stubs.finetune.CreateJob, finetune_pb2.CreateJobRequest(
        base=spec("digits"), dataset_id=dataset_id, output_name="again"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    # Models made by `zoo finetune` (recorded in the index) are served as version 1 of their
    # recorded name; the store wins a name both have.
    import shutil

    from zoo import model_dir

    made = served[2] / "cli-made"
    shutil.copytree(served[0].home / "models" / "digits" / "1", made)
    monkeypatch.setenv("ZOO_HOME", str(served[0].home))
    model_dir.record(made, "cli-made")
    model_dir.record(made, "digits")
    cli = stubs.inference.Classify(inference_pb2.ClassifyRequest(
        model=spec("cli-made"), images=[sevens[0].read_bytes()]))
    assert cli.model.version == 1 and cli.results[0].predictions[0].label == \
        first.results[0].predictions[0].label
    listed = stubs.models.ListModels(models_pb2.ListModelsRequest(pattern="cli-*")).models
    assert [(m.name, m.version, m.origin) for m in listed] == [
        ("cli-made", 1, models_pb2.ModelInfo.FINETUNED)]
    assert stubs.models.GetModel(models_pb2.GetModelRequest(model=spec("digits"))).model.version == 2
    error = rpc_error(stubs.models.GetModel, models_pb2.GetModelRequest(model=spec("cli-made", 2)))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    jobs = stubs.finetune.ListJobs(finetune_pb2.ListJobsRequest()).jobs
    assert [j.id for j in jobs[:2]] == [second.id, job.id], "newest first"
    succeeded = stubs.finetune.ListJobs(finetune_pb2.ListJobsRequest(state=finetune_pb2.SUCCEEDED,
                                                                     limit=1)).jobs
    assert [j.id for j in succeeded] == [second.id]
    error = rpc_error(stubs.finetune.CancelJob, finetune_pb2.CancelJobRequest(job_id=job.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


def sentiment_csv(per_class: int = 24) -> bytes:
    good = ["wonderful", "delightful", "brilliant", "lovely", "superb", "great"]
    bad = ["terrible", "awful", "dreadful", "boring", "horrible", "bad"]
    things = ["film", "meal", "book", "concert", "hotel", "game", "show", "trip"]
    rows = ["text,label"]
    for i in range(per_class):
        thing = things[i % len(things)]
        rows.append(f"the {thing} was {good[i % len(good)]} and I enjoyed it,positive")
        rows.append(f"the {thing} was {bad[i % len(bad)]} and I hated it,negative")
    return ("\n".join(rows) + "\n").encode()


def test_text_job_then_classify_text(served):
    stubs = served[1]
    dataset = stubs.finetune.UploadDataset(iter(upload_requests(sentiment_csv(), TEXT_CSV)))
    assert dataset.examples == 48 and list(dataset.classes) == ["negative", "positive"]
    error = rpc_error(stubs.finetune.CreateJob, finetune_pb2.CreateJobRequest(
        base=spec("minilm_l6_v2"), dataset_id=dataset.dataset_id, output_name="sentiment",
        hyperparameters=finetune_pb2.HyperParameters(fine_tune_fraction=0.5)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "--fine-tune-fraction applies to image bases" in error.details()
    job = stubs.finetune.CreateJob(finetune_pb2.CreateJobRequest(
        base=spec("minilm_l6_v2"), dataset_id=dataset.dataset_id, output_name="sentiment",
        hyperparameters=finetune_pb2.HyperParameters(epochs=20, learning_rate=1e-2, patience=0)))
    final = wait_job(stubs, job.id)
    assert final.state == finetune_pb2.SUCCEEDED, final.error
    response = stubs.inference.ClassifyText(inference_pb2.ClassifyTextRequest(
        model=spec("sentiment"), texts=["the dinner was superb and I enjoyed it",
                                        "the museum was dreadful and I hated it",
                                        "wonderful " * 400], top_k=1))
    assert response.model.name == "sentiment" and response.model.version == 1
    assert [r.predictions[0].label for r in response.results[:2]] == ["positive", "negative"]
    assert response.truncated == 1
    # The default top_k of a 2-class model is 2, and a larger one is clamped to it.
    for top_k in (0, 3):
        answer = stubs.inference.ClassifyText(inference_pb2.ClassifyTextRequest(
            model=spec("sentiment"), texts=["ok"], top_k=top_k))
        assert len(answer.results[0].predictions) == 2
    info = stubs.models.GetModel(models_pb2.GetModelRequest(model=spec("sentiment"))).model
    assert info.task == 3 and list(info.labels) == ["negative", "positive"]  # TEXT_CLASSIFICATION
    for request, code in [
        (inference_pb2.ClassifyTextRequest(model=spec("sentiment")), "INVALID_ARGUMENT"),
        (inference_pb2.ClassifyTextRequest(model=spec("sentiment"), texts=["ok", " "]),
         "INVALID_ARGUMENT"),
        (inference_pb2.ClassifyTextRequest(model=spec("sentiment"), texts=["ok"], top_k=-1),
         "INVALID_ARGUMENT"),
        (inference_pb2.ClassifyTextRequest(model=spec("sentiment", 2), texts=["ok"]),
         "NOT_FOUND"),
    ]:
        assert rpc_error(stubs.inference.ClassifyText, request).code().name == code
    error = rpc_error(stubs.inference.Embed, inference_pb2.EmbedRequest(
        model=spec("sentiment"), texts=["ok"]))
    assert "minilm_l6_v2" in error.details()
    loaded = stubs.models.LoadModel(models_pb2.LoadModelRequest(model=spec("sentiment")))
    assert loaded.model.loaded


SLOW = finetune_pb2.HyperParameters(**SLOW_JOB)  # surely mid-run after its first epoch event


def test_cancel_queued_and_running_jobs(served, dataset_id):
    server, stubs = served[0], served[1]
    running = stubs.finetune.CreateJob(finetune_pb2.CreateJobRequest(
        base=spec(), dataset_id=dataset_id, output_name="cancelled", hyperparameters=SLOW))
    queued = stubs.finetune.CreateJob(finetune_pb2.CreateJobRequest(
        base=spec(), dataset_id=dataset_id, output_name="cancelled", hyperparameters=SLOW))
    assert queued.state == finetune_pb2.QUEUED
    stopped = stubs.finetune.CancelJob(finetune_pb2.CancelJobRequest(job_id=queued.id))
    assert stopped.state == finetune_pb2.CANCELLED and stopped.attempts == 0
    wait_for(lambda: stubs.finetune.GetJob(finetune_pb2.GetJobRequest(job_id=running.id)).epoch >= 1,
             timeout=120)
    cancelled = stubs.finetune.CancelJob(finetune_pb2.CancelJobRequest(job_id=running.id))
    if cancelled.state != finetune_pb2.CANCELLED:
        cancelled = wait_job(stubs, running.id, timeout=60)
    assert cancelled.state == finetune_pb2.CANCELLED and cancelled.epoch < 200
    events = list(stubs.finetune.WatchJob(finetune_pb2.WatchJobRequest(job_id=running.id)))
    assert events[-1].state == finetune_pb2.CANCELLED
    error = rpc_error(stubs.models.GetModel, models_pb2.GetModelRequest(model=spec("cancelled")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert not (server.home / "jobs" / running.id / "out").exists()


# --- crash and restart -----------------------------------------------------------------------


def job_row(home: Path, job_id: str) -> dict:
    with sqlite3.connect(home / "server.db") as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


EPOCHS = 40


def test_killed_server_resumes_the_job_from_its_checkpoint(pretrained_tiny, tmp_path, digits):
    env = mirror_env(pretrained_tiny, tmp_path)
    home = tmp_path / "home"
    first = ServerProcess(home, env, "--max-jobs", "1")
    stubs = Stubs(first.target)
    dataset = stubs.finetune.UploadDataset(iter(upload_requests(zip_folder(digits), IMAGE_ZIP)))
    job = stubs.finetune.CreateJob(finetune_pb2.CreateJobRequest(
        base=spec(), dataset_id=dataset.dataset_id, output_name="resumed",
        hyperparameters=finetune_pb2.HyperParameters(epochs=EPOCHS, image_size=32, patience=0,
                                                     fit_head=False)))
    wait_for(lambda: stubs.finetune.GetJob(finetune_pb2.GetJobRequest(job_id=job.id)).epoch >= 1,
             timeout=120)
    worker = next(e["pid"] for e in first.lines if e.get("event") == "job_started")
    first.stop(signal.SIGKILL)
    stubs.close()
    wait_for(lambda: not pid_alive(worker), timeout=10)  # the worker died with the server
    row = job_row(home, job.id)
    assert row["state"] == "RUNNING" and row["attempts"] == 1
    checkpoint = json.loads((home / "jobs" / job.id / "out" / "checkpoints" / "state.json")
                            .read_text())["epoch"]
    assert 1 <= checkpoint < EPOCHS

    second = ServerProcess(home, env, "--max-jobs", "1")
    stubs = Stubs(second.target)
    try:
        final = wait_job(stubs, job.id)
        assert final.state == finetune_pb2.SUCCEEDED, final.error
        assert final.attempts == 2 and final.epoch == EPOCHS
        events = list(stubs.finetune.WatchJob(finetune_pb2.WatchJobRequest(job_id=job.id)))
        running = [i for i, e in enumerate(events) if e.state == finetune_pb2.RUNNING
                   and e.kind == finetune_pb2.JobEvent.STATE]
        assert len(running) == 2 and "resuming" in events[running[1]].message
        requeued = [e for e in events if e.kind == finetune_pb2.JobEvent.STATE
                    and e.state == finetune_pb2.QUEUED]
        assert "requeued" in requeued[-1].message
        resumed = [e.epoch for e in events[running[1]:] if e.kind == finetune_pb2.JobEvent.EPOCH]
        assert resumed == list(range(checkpoint + 1, EPOCHS + 1)), "it went on from the checkpoint"
        image = sorted((digits / "3").glob("*.png"))[0].read_bytes()
        result = stubs.inference.Classify(inference_pb2.ClassifyRequest(
            model=spec("resumed"), images=[image]))
        assert result.model.version == 1
    finally:
        stubs.close()
        assert second.stop() == 0


def test_zz_sigterm_requeues_the_running_job(served, dataset_id):
    """Last in the module: it stops the module's server."""
    server, stubs = served[0], served[1]
    job = stubs.finetune.CreateJob(finetune_pb2.CreateJobRequest(
        base=spec(), dataset_id=dataset_id, output_name="graceful", hyperparameters=SLOW))
    wait_for(lambda: stubs.finetune.GetJob(finetune_pb2.GetJobRequest(job_id=job.id)).epoch >= 1,
             timeout=120)
    watch = stubs.finetune.WatchJob(finetune_pb2.WatchJobRequest(job_id=job.id))
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 30
    events = list(watch)  # the stream ends with the server, it is not cut off mid-message
    assert events and events[0].kind == finetune_pb2.JobEvent.STATE
    row = job_row(server.home, job.id)
    assert row["state"] == "QUEUED" and row["attempts"] == 1 and 1 <= row["epoch"] < 200
    assert (server.home / "jobs" / job.id / "out" / "checkpoints" / "state.json").is_file()
    assert any(e.get("event") == "stopped" for e in server.lines)
