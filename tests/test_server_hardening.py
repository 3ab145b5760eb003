"""Issue 13's bad-input campaign, item by item, below the gRPC layer: hostile archives,
echoed client strings, dataset deletion and retention, ListJobs' state, server paths in
messages, exposure without a token and what job workers inherit. Each failed before.
(The same cases over gRPC are in test_server_jobs.py; random ones in test_fuzz_archives.py.)
"""

from __future__ import annotations

import hashlib
import tarfile
import tracemalloc
from pathlib import Path

import grpc
import pytest

from tests.archives import (
    folders_tar,
    folders_zip,
    metadata_bomb,
    tar_bytes,
    valid_members,
    zip_bytes,
)
from tests.conftest import TINY
from zoo.errors import InvalidInputError
from zoo_api.v1 import finetune_pb2
from zoo_server.config import ServerConfig, is_loopback
from zoo_server.datasets import (
    IMAGE_TAR,
    IMAGE_ZIP,
    MAX_TAR_METADATA,
    DatasetStore,
    Header,
    Limits,
    count_zip_members,
)
from zoo_server.db import Database, now_ms
from zoo_server.errors import (
    JobStateError,
    NotFoundError,
    quote,
    status_for,
)
from zoo_server.jobs import JobManager, needs_hub, state_filter, worker_environment
from zoo_server.paths import HF_CACHE_LABEL, PathScrubber, public_path
from zoo_server.store import ModelStore

MIB = 1 << 20
JOB_STATE_NAMES = {number: name for name, number in finetune_pb2.JobState.items()}


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture()
def db(home: Path) -> Database:
    database = Database(home / "server.db")
    yield database
    database.close()


def make_store(home: Path, db: Database, *, max_files: int = 300,
               retention_days: float = 0.0) -> DatasetStore:
    return DatasetStore(home, db, Limits(64 * MIB, 64 * MIB, max_files), retention_days)


def upload(store: DatasetStore, data: bytes, fmt: str = IMAGE_TAR) -> dict:
    header = Header("test", fmt, hashlib.sha256(data).hexdigest(), len(data))
    return store.upload(header, [data])


def leftovers(store: DatasetStore) -> list[str]:
    """Everything under the home besides the database and published datasets."""
    known = store.db.dataset_ids()
    found = []
    for path in store.home.rglob("*"):
        rel = path.relative_to(store.home)
        if rel.parts[0].startswith("server.db") or (rel.parts[0] == "datasets" and (
                len(rel.parts) == 1 or rel.parts[1] in known)):
            continue
        if rel.parts[0] == "tmp" and len(rel.parts) == 1:
            continue
        found.append(str(rel))
    return found


# --- 1: archive metadata is bounded before it is read ----------------------------------------


@pytest.fixture(scope="module")
def long_name_bomb(tmp_path_factory) -> Path:
    """The campaign's archive: a ~300 KB tar.gz whose long-name record claims 300 MiB."""
    return metadata_bomb(tmp_path_factory.mktemp("bomb") / "bomb.tar.gz", 300 * MIB)


def test_a_300_mib_long_name_record_is_refused_unread(home, db, long_name_bomb):
    store = make_store(home, db)
    data = long_name_bomb.read_bytes()
    assert len(data) < 400_000
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError) as error:
            upload(store, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(error.value)
    assert "long-name or pax record" in message and "314,572,800" in message
    assert len(message) < 300 and "aaaa" not in message, "the name is never echoed"
    assert peak < 16 * MIB + len(data), f"{peak / MIB:.0f} MiB allocated"
    assert leftovers(store) == []
    code, _ = status_for(error.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE])
def test_long_link_and_pax_records_are_bounded_too(home, db, tmp_path, kind):
    bomb = metadata_bomb(tmp_path / "bomb.tar.gz", 8 * MIB, kind)
    with pytest.raises(InvalidInputError, match="long-name or pax record"):
        upload(make_store(home, db), bomb.read_bytes())


def test_long_names_within_the_bound_still_work(home, db):
    name = "cat/" + "/".join(["n" * 200] * 3) + ".png"
    members = [*valid_members(), (name, valid_members()[0][1])]
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        row = upload(make_store(home, db), tar_bytes(members, gz=True, fmt=fmt))
        assert row["examples"] == 5
    assert MAX_TAR_METADATA >= 4096
    with pytest.raises(InvalidInputError, match="longer than 255 bytes"):
        upload(make_store(home, db), tar_bytes([*valid_members(), ("cat/" + "n" * 300, b"")]))


# --- 5: every member counts; deleting and expiring datasets ----------------------------------


@pytest.mark.parametrize("archive", ["tar", "zip"])
def test_folders_count_against_the_member_limit(home, db, archive):
    store = make_store(home, db, max_files=300)
    data = folders_tar(300) if archive == "tar" else folders_zip(300)
    with pytest.raises(InvalidInputError, match="more than 300 members"):
        upload(store, data, IMAGE_TAR if archive == "tar" else IMAGE_ZIP)
    assert leftovers(store) == []


def test_empty_folders_cost_no_inodes(home, db):
    store = make_store(home, db, max_files=300)
    row = upload(store, folders_tar(100))
    assert row["classes"] == ["cat", "dog"]
    assert not list(home.rglob("empty")), "folders are made only for the files in them"


def test_a_zip_of_countless_entries_is_refused_before_zipfile_reads_them(tmp_path):
    path = tmp_path / "many.zip"
    path.write_bytes(zip_bytes([(f"a/{i}", b"") for i in range(2000)], folders=False,
                               compression=0))
    assert count_zip_members(path, 5000) == 2000
    with pytest.raises(InvalidInputError, match="more than 1,000 members"):
        count_zip_members(path, 1000)


def test_tar_members_are_capped(home, db):
    members = [(f"{'ab'[i % 2]}/{i}.png", valid_members()[0][1]) for i in range(40)]
    store = make_store(home, db, max_files=30)
    with pytest.raises(InvalidInputError, match="more than 30 members"):
        upload(store, tar_bytes(members, folders=False))


def add_job(db: Database, dataset_id: str, state: str, created_ms: int | None = None,
            finished_ms: int = 0) -> str:
    job_id = f"job_{hashlib.sha256(f'{dataset_id}{state}{created_ms}'.encode()).hexdigest()[:16]}"
    db.add_job({"id": job_id, "state": state, "base": TINY, "dataset_id": dataset_id,
                "output_name": "x", "hyperparameters": {}, "epochs": 1,
                "created_ms": created_ms or now_ms()})
    if finished_ms:
        db.update_job(job_id, finished_ms=finished_ms)
    return job_id


def test_delete_dataset(home, db):
    store = make_store(home, db)
    row = upload(store, tar_bytes(valid_members()))
    folder = store.path(row)
    assert folder.is_dir()
    job = add_job(db, row["id"], "QUEUED")
    with pytest.raises(JobStateError, match=job) as error:
        store.delete(row["id"])
    assert status_for(error.value)[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert folder.is_dir() and db.dataset(row["id"]) is not None
    db.update_job(job, state="FAILED")
    assert store.delete(row["id"])["id"] == row["id"]
    assert not folder.exists() and db.dataset(row["id"]) is None
    assert leftovers(store) == []
    for missing in (row["id"], "ds_0000000000000000", "../../etc", "x" * 1_000_000):
        with pytest.raises(NotFoundError) as error:
            store.delete(missing)
        assert status_for(error.value)[0] == grpc.StatusCode.NOT_FOUND
        assert len(status_for(error.value)[1]) < 400
    assert db.job(job) is not None, "the job's record stays"
    again = upload(store, tar_bytes(valid_members()))
    assert again["id"] != row["id"] and store.path(again).is_dir()


def test_datasets_unused_for_the_retention_period_expire(home, db):
    store = make_store(home, db, retention_days=30)
    day = 86_400_000
    now = now_ms()
    rows = {}
    for name, members in [("old", 1), ("old_with_old_job", 2), ("old_with_recent_job", 3),
                          ("old_in_use", 4), ("new", 5)]:
        rows[name] = upload(store, tar_bytes(valid_members(members)))
        if name != "new":
            db.execute("UPDATE datasets SET created_ms = ? WHERE id = ?",
                       (now - 40 * day, rows[name]["id"]))
    add_job(db, rows["old_with_old_job"]["id"], "SUCCEEDED", now - 39 * day, now - 38 * day)
    add_job(db, rows["old_with_recent_job"]["id"], "SUCCEEDED", now - 39 * day, now - 2 * day)
    add_job(db, rows["old_in_use"]["id"], "RUNNING", now - 39 * day)
    expired = store.expire(now)
    assert sorted(expired) == sorted([rows["old"]["id"], rows["old_with_old_job"]["id"]])
    for name, row in rows.items():
        assert store.path(row).is_dir() == (row["id"] not in expired), name
    assert make_store(home, db, retention_days=0).expire(now + 1000 * day) == []


def test_retention_setting():
    assert ServerConfig().dataset_retention_days == 0
    config = ServerConfig.from_env({"ZOO_SERVE_DATASET_RETENTION_DAYS": "7.5"})
    assert config.dataset_retention_days == 7.5
    with pytest.raises(InvalidInputError, match="dataset_retention_days"):
        ServerConfig(dataset_retention_days=-1)


# --- 7: messages quote client strings cut short ----------------------------------------------


def test_quote_cuts_long_strings_and_says_how_long():
    assert quote("ds_1") == "'ds_1'"
    quoted = quote("x" * 1_000_000)
    assert len(quoted) < 260 and "1,000,000 characters" in quoted
    code, message = status_for(NotFoundError("no dataset " + "y" * 1_000_000))
    assert code == grpc.StatusCode.NOT_FOUND and len(message) < 2100


def test_a_1_mb_dataset_id_is_not_found_with_a_short_message(home, db):
    store = make_store(home, db)
    jobs = JobManager(home, db, ModelStore(home), store, ServerConfig())
    with pytest.raises(NotFoundError) as error:
        jobs.create(TINY, "d" * 1_000_000, {}, "out")
    code, message = status_for(error.value)
    assert code == grpc.StatusCode.NOT_FOUND
    assert message.startswith("no dataset 'ddd") and len(message) < 400
    with pytest.raises(NotFoundError) as error:
        jobs.get("j" * 1_000_000)
    assert len(str(error.value)) < 400


# --- 8: ListJobs' state ------------------------------------------------------------------------


def test_list_jobs_state_filter():
    assert state_filter(0, JOB_STATE_NAMES) is None
    assert state_filter(finetune_pb2.RUNNING, JOB_STATE_NAMES) == "RUNNING"
    for bad in (77, -1, 2**31 - 1):
        with pytest.raises(InvalidInputError, match=f"state {bad} is not a job state") as error:
            state_filter(bad, JOB_STATE_NAMES)
        assert "QUEUED (1)" in str(error.value)
        assert status_for(error.value)[0] == grpc.StatusCode.INVALID_ARGUMENT


# --- 9: paths relative to the home ------------------------------------------------------------


def test_paths_are_said_relative_to_the_home(tmp_path):
    home, hf = tmp_path / "zoo", tmp_path / "hf" / "hub"
    scrub = PathScrubber(home, hf)
    assert public_path(home / "models" / "cats" / "2", home) == "models/cats/2"
    assert scrub.path(hf / "models--org--m" / "x.json") == f"{HF_CACHE_LABEL}/models--org--m/x.json"
    assert public_path("/etc/zoo/secret.key", home) == ".../secret.key"
    message = (f"the training process exited with code 1; see {home}/jobs/job_1/worker.log; "
               f"{hf}/models--a--b is not in the cache; manifest /opt/site/zoo/m.json is bad; "
               "from https://storage.googleapis.com/keras/x.h5 into cat/1.jpg, see "
               f"'{home}'")
    cleaned = scrub(message)
    assert str(tmp_path) not in cleaned and "/opt/site" not in cleaned
    assert "see jobs/job_1/worker.log;" in cleaned
    assert f"{HF_CACHE_LABEL}/models--a--b is not" in cleaned and ".../m.json" in cleaned
    assert "https://storage.googleapis.com/keras/x.h5" in cleaned and "cat/1.jpg" in cleaned
    code, status = status_for(NotFoundError(f"no file {home}/cache/a.h5"), scrub)
    assert status == "no file cache/a.h5"


def test_job_errors_and_events_never_name_absolute_paths(home, db):
    store = make_store(home, db)
    jobs = JobManager(home, db, ModelStore(home), store, ServerConfig())
    job = add_job(db, "ds_0000000000000000", "RUNNING")
    jobs._end(job, "FAILED", f"could not read {home}/datasets/ds_1/files/cat/1.png")
    assert db.job(job)["error"] == "could not read datasets/ds_1/files/cat/1.png"
    assert all(str(home) not in str(event) for _, event in db.events(job))


# --- 10: exposure without a token; what workers inherit --------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_needs_no_token(host):
    assert is_loopback(host)
    ServerConfig().check_exposure(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
def test_other_hosts_need_a_token_or_insecure(host):
    with pytest.raises(InvalidInputError) as error:
        ServerConfig().check_exposure(host)
    message = str(error.value)
    assert host in message and "ZOO_TOKEN" in message and "--insecure" in message
    assert "\n" not in message
    ServerConfig(token="t").check_exposure(host)
    ServerConfig(insecure=True).check_exposure(host)
    ServerConfig.from_env({"ZOO_SERVE_INSECURE": "yes"}).check_exposure(host)


def test_workers_get_only_what_they_need():
    environ = {"PATH": "/usr/bin", "HOME": "/home/z", "ZOO_TOKEN": "server-secret",
               "ZOO_SERVE_MAX_JOBS": "2", "ZOO_MANIFEST": "/m.json", "HF_TOKEN": "hf-secret",
               "HUGGING_FACE_HUB_TOKEN": "hf-old", "HF_ENDPOINT": "http://hub",
               "AWS_SECRET_ACCESS_KEY": "aws", "DATABASE_URL": "postgres://u:p@h/db",
               "TF_CPP_MIN_LOG_LEVEL": "2", "LC_ALL": "C.UTF-8", "HTTPS_PROXY": "http://p"}
    image = worker_environment(environ, needs_hub=False)
    assert image == {"PATH": "/usr/bin", "HOME": "/home/z", "ZOO_MANIFEST": "/m.json",
                     "HF_ENDPOINT": "http://hub", "TF_CPP_MIN_LOG_LEVEL": "2",
                     "LC_ALL": "C.UTF-8", "HTTPS_PROXY": "http://p"}
    text = worker_environment(environ, needs_hub=True)
    assert text == {**image, "HF_TOKEN": "hf-secret", "HUGGING_FACE_HUB_TOKEN": "hf-old"}
    assert needs_hub("bert_base_uncased") and needs_hub("minilm_l6_v2")
    assert not needs_hub(TINY) and not needs_hub("no_such_model")
