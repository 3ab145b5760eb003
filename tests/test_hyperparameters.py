"""One schema of hyper-parameters, and every surface derived from it.

A field added to zoo.finetuning.hyperparameters.HyperParameters must reach the CLI (local
and `--server`), the proto, the client and the server's check; these tests fail when any
surface lacks one, or when a surface accepts a value the library would refuse.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from google.protobuf.descriptor import FieldDescriptor

from zoo.errors import InvalidInputError
from zoo.finetuning.hyperparameters import (
    SEED_MAX,
    HyperParameters,
    field_names,
    flag_of,
    image_only,
    rule,
)
from zoo_api.v1 import finetune_pb2

FIELDS = dataclasses.fields(HyperParameters)
PROTO = finetune_pb2.HyperParameters.DESCRIPTOR
PROTO_TYPES = {int: (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64),
               float: (FieldDescriptor.TYPE_DOUBLE,), bool: (FieldDescriptor.TYPE_BOOL,)}


def valid_value(name: str):
    """A value inside the field's range that differs from its default."""
    r = rule(name)
    if r.kind is bool:
        return not HyperParameters().__getattribute__(name)
    candidates = [r.low + 1 if r.low is not None else 1, (r.low or 0) + 0.5,
                  r.high if r.high is not None and not r.high_open else None]
    for value in candidates:
        if value is None:
            continue
        value = r.kind(value)
        try:
            HyperParameters.from_kwargs(**{name: value})
        except InvalidInputError:
            continue
        if value != getattr(HyperParameters(), name):
            return value
    raise AssertionError(f"no valid value for {name}")


def test_the_proto_message_has_exactly_the_schemas_fields_with_matching_types() -> None:
    proto = {f.name: f for f in PROTO.fields}
    assert set(proto) == set(field_names())
    for f in FIELDS:
        assert proto[f.name].type in PROTO_TYPES[rule(f.name).kind], f.name
        assert proto[f.name].has_presence, f"{f.name} must be `optional`: unset means default"


@pytest.mark.parametrize("name", field_names())
def test_every_field_is_a_cli_flag_that_reaches_local_and_remote_runs(name: str) -> None:
    from zoo.cli.finetune_cmd import hyperparameters_of
    from zoo.cli.main import build_parser

    value = valid_value(name)
    argv = ["finetune", "base", "--data", "d", "--out", "o", flag_of(name)]
    if rule(name).kind is not bool:
        argv.append(str(value))
    args = build_parser().parse_args(argv)
    assert hyperparameters_of(args) == {name: value}
    # Unset flags stay unset (the library's defaults apply), so nothing else is sent.
    assert hyperparameters_of(build_parser().parse_args(argv[:6])) == {}


@pytest.mark.parametrize("name", field_names())
def test_every_field_goes_through_the_client_and_the_servers_check(name: str) -> None:
    from zoo_client.inputs import hyperparameters
    from zoo_server.jobs import HYPERPARAMETERS, check_hyperparameters

    value = valid_value(name)
    message = hyperparameters({name: value})
    assert message.HasField(name) and getattr(message, name) == pytest.approx(value)
    assert name in HYPERPARAMETERS
    check_hyperparameters({name: value}, image=True)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rate": math.inf}, "learning_rate must be a finite number"),
        ({"learning_rate": math.nan}, "learning_rate must be a finite number"),
        ({"learning_rate": 0.0}, r"learning_rate must be in \(0, 10\]"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"seed": 2**40}, f"seed must be in \\[0, {SEED_MAX}\\]"),
        ({"seed": -1}, "seed must be in"),
        ({"batch_size": 2**31 - 1}, r"batch_size must be in \[1, 4096\]"),
        ({"fine_tune_layers": 2**31 - 1}, "fine_tune_layers must be in"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"augment": 1}, "augment must be true or false"),
        ({"epochs": True}, "epochs must be a number"),
        ({"dropuot": 0.5}, "did you mean 'dropout'"),
    ],
)
def test_bad_values_are_refused_the_same_way_everywhere(values, message) -> None:
    from zoo_server.jobs import check_hyperparameters

    with pytest.raises(InvalidInputError, match=message):
        HyperParameters.from_kwargs(**values)
    with pytest.raises(InvalidInputError, match=message):
        check_hyperparameters(values, image=True)


def test_image_only_settings_are_refused_for_text_bases_naming_the_flags() -> None:
    assert set(image_only()) == {"fine_tune_fraction", "image_size", "augment",
                                 "cache_features"}
    hp = HyperParameters.from_kwargs(augment=True, cache_features=False)
    with pytest.raises(InvalidInputError, match="--augment, --no-feature-cache apply to image"):
        hp.check_task(image=False, model="minilm_l6_v2")
    hp.check_task(image=True, model="mobilenet_v2")
    HyperParameters.from_kwargs(augment=False).check_task(image=False, model="minilm_l6_v2")
