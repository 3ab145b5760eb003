"""The `zoo` command as a user runs it: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PYTHONPATH
from tests.keras_weights import write_mirror
from tests.servers.static import StaticServer
from zoo.hub.manifest import load_manifest

SCRIPT = Path(sys.executable).with_name("zoo")
ZOO = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "zoo.cli.main"]


def zoo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ZOO, *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": PYTHONPATH, **env},
    )


def test_list_json_has_the_documented_fields() -> None:
    result = zoo("list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) >= 40
    by_name = {r["name"]: r for r in rows}
    assert by_name["resnet50"]["task"] == "image-classification"
    assert by_name["resnet50"]["input_size"] == [224, 224]
    assert by_name["resnet50"]["top1"] == 74.9
    assert by_name["resnet50"]["params"] == 25636712
    assert by_name["resnet50"]["cached"] is False
    assert by_name["minilm_l6_v2"]["task"] == "text-embedding"


def test_list_table_filters_by_pattern_and_task() -> None:
    result = zoo("list", "densenet*")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TASK", "PARAMS", "INPUT", "TOP-1", "CACHED"]
    assert [line.split()[0] for line in lines[1:]] == ["densenet121", "densenet169", "densenet201"]
    assert "8.1M" in lines[1] and "224x224" in lines[1] and "75.0" in lines[1]
    text = zoo("list", "--task", "text-classification").stdout
    assert "bert_base_uncased" in text and "resnet50" not in text


def test_cheap_commands_never_import_tensorflow() -> None:
    code = (
        "import sys; from zoo.cli.main import main\n"
        "for argv in (['list'], ['info', 'vgg16'], ['cache', 'list']):\n"
        "    assert main(argv) == 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": PYTHONPATH})
    assert result.returncode == 0, result.stderr


def test_info_shows_spec_and_pinned_files() -> None:
    result = zoo("info", "vgg16")
    assert result.returncode == 0
    assert "VGG16" in result.stdout and "caffe" in result.stdout
    assert "md5:64373286793e3c8b2b4e3219cbf3544b" in result.stdout
    data = json.loads(zoo("info", "minilm_l6_v2", "--json").stdout)
    assert data["weights"]["repo_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert data["head"]["pooling"] == "mean"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("info", "resnet5"), 1, "unknown model 'resnet5'; did you mean resnet50"),
        (("fetch",), 1, "name at least one model"),
        (("fetch", "--all", "vgg16"), 1, "not both"),
        (("list", "--task", "nope"), 2, "invalid choice"),
        (("frobnicate",), 2, "invalid choice"),
        (("cache", "remove"), 1, "--all"),
    ],
)
def test_errors_are_one_line_with_the_right_exit_code(args, code, message) -> None:
    result = zoo(*args)
    assert result.returncode == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_fetch_then_cache_list_verify_remove(tmp_path: Path) -> None:
    url = load_manifest().model("mobilenet_v2_035_96").files["notop"].origin
    root = tmp_path / "storage"
    manifest = write_mirror(root, {url: os.urandom(100_000)}, tmp_path / "m.json")
    with StaticServer(root) as server:
        env = {"ZOO_MANIFEST": str(manifest), "ZOO_KERAS_MIRROR": server.url}
        fetched = zoo("fetch", "mobilenet_v2_035_96", "--no-top", **env)
        assert fetched.returncode == 0, fetched.stderr
        path = Path(fetched.stdout.strip())
        assert path.is_file() and path.name == url.rsplit("/", 1)[1]
        as_json = json.loads(zoo("fetch", "mobilenet_v2_035_96", "--no-top", "--json", **env).stdout)
        assert as_json == [{"name": "mobilenet_v2_035_96", "path": str(path)}]
        assert len(server.log("GET")) == 1

        listed = json.loads(zoo("cache", "list", "--json", **env).stdout)
        assert [(r["model"], r["kind"]) for r in listed] == [("mobilenet_v2_035_96", "notop")]
        assert "1 of 1 cached files verified" in zoo("cache", "verify", **env).stdout

        path.write_bytes(b"corrupted")
        bad = zoo("cache", "verify", **env)
        assert bad.returncode == 1 and "BAD" in bad.stdout and "fail verification" in bad.stderr

        removed = zoo("cache", "remove", "mobilenet_v2_035_96", **env)
        assert removed.returncode == 0 and not path.exists()


def test_fetch_failure_is_one_line_naming_what_was_tried(tmp_path: Path) -> None:
    result = zoo("fetch", "vgg16", ZOO_KERAS_MIRROR=str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "could not fetch vgg16_weights_tf_dim_ordering_tf_kernels.h5" in result.stderr
    assert str(tmp_path / "nowhere") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
