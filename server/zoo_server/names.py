"""Validation of every client-supplied name before it comes near the file system.

Model names that become folders (`output_name`) and dataset/job ids must match a strict
pattern, so that no request can name a path outside `ZOO_HOME`. Names that are only
looked up (registry names, `zoo finetune` names from the index) are checked to be plain
names, never paths, and are then used as dictionary keys only.
"""

from __future__ import annotations

import re
import secrets

from zoo.errors import InvalidInputError

# Letters, digits, '-', '_', '.'; starts with a letter or digit (so never '.' or '..').
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DATASET_ID = re.compile(r"ds_[0-9a-f]{16}")
JOB_ID = re.compile(r"job_[0-9a-f]{16}")
_LOOKUP_MAX = 200


def check_output_name(name: str) -> str:
    """A name for a model the server stores as ZOO_HOME/models/<name>/<version>/."""
    if not MODEL_NAME.fullmatch(name):
        raise InvalidInputError(
            f"output_name {name[:80]!r} is not a valid model name: use 1-64 letters, digits, "
            "'-', '_' or '.', starting with a letter or digit"
        )
    return name


def is_storable(name: str) -> bool:
    return MODEL_NAME.fullmatch(name) is not None


def check_lookup_name(name: str, what: str = "model name") -> str:
    """A model name to look up: non-empty, short, printable, and never a path."""
    name = name.strip()
    if not name:
        raise InvalidInputError(f"{what} is empty: set model.name (e.g. \"mobilenet_v2\")")
    if (len(name) > _LOOKUP_MAX or any(c in name for c in "/\\\0") or name.startswith(".")
            or not name.isprintable()):
        raise InvalidInputError(
            f"{what} {name[:80]!r} is not a model name (names are not paths; no '/', '\\' "
            "or leading '.')"
        )
    return name


def check_dataset_id(dataset_id: str) -> str:
    if not DATASET_ID.fullmatch(dataset_id):
        raise InvalidInputError(
            f"dataset_id {dataset_id[:80]!r} is not a dataset id (UploadDataset returns ids "
            "like ds_0123456789abcdef)"
        )
    return dataset_id


def new_dataset_id() -> str:
    return "ds_" + secrets.token_hex(8)


def new_job_id() -> str:
    return "job_" + secrets.token_hex(8)
