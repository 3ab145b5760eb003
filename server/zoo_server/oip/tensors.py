"""Tensors of the Open Inference Protocol, in and out of their three wire forms.

gRPC carries a tensor's elements either in the `InferTensorContents` field of its datatype
or as raw bytes (`raw_input_contents` / `raw_output_contents`, what tritonclient sends);
HTTP carries them as JSON (`data`, flattened or nested) or, with the binary tensor data
extension, as bytes after the JSON header (`Inference-Header-Content-Length`, each binary
tensor's size in its `binary_data_size` parameter). Raw bytes are little-endian and
row-major; a BYTES element is a 4-byte little-endian length and then its bytes.

Everything here is transport-level: it turns requests into `InferRequest` (tensors as
numpy arrays of the declared datatype and shape) and `InferResponse` back into messages,
checking datatypes, shapes and sizes on the way. What a model accepts is the backend's
business (`zoo_server.oip.signatures`). Every malformed tensor raises InvalidInputError,
which both protocols report as a bad request (INVALID_ARGUMENT, HTTP 400).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo_oip import grpc_service_pb2 as pb

Param = bool | int | float | str
Parameters = dict[str, Param]
HEADER_LENGTH = "Inference-Header-Content-Length"  # HTTP: bytes of JSON before binary data
BINARY_SIZE = "binary_data_size"  # tensor parameter: its bytes in the binary part
BINARY = "binary_data"  # requested-output parameter: return this output as binary
BINARY_OUTPUTS = "binary_data_output"  # request parameter: every output as binary


@dataclass(frozen=True)
class DataType:
    name: str
    dtype: np.dtype[Any]  # little-endian; object for BYTES
    contents: str | None  # the InferTensorContents field; None: raw bytes only (FP16)
    json_kinds: str  # numpy kinds a JSON array may hold for this type

    @property
    def itemsize(self) -> int:
        return 0 if self.name == "BYTES" else self.dtype.itemsize


def _types() -> dict[str, DataType]:
    rows = [("BOOL", "?", "bool_contents", "b"),
            ("UINT8", "<u1", "uint_contents", "iu"), ("UINT16", "<u2", "uint_contents", "iu"),
            ("UINT32", "<u4", "uint_contents", "iu"), ("UINT64", "<u8", "uint64_contents", "iu"),
            ("INT8", "<i1", "int_contents", "iu"), ("INT16", "<i2", "int_contents", "iu"),
            ("INT32", "<i4", "int_contents", "iu"), ("INT64", "<i8", "int64_contents", "iu"),
            ("FP16", "<f2", None, "iuf"), ("FP32", "<f4", "fp32_contents", "iuf"),
            ("FP64", "<f8", "fp64_contents", "iuf"), ("BYTES", "O", "bytes_contents", "U")]
    return {name: DataType(name, np.dtype(code), contents, kinds)
            for name, code, contents, kinds in rows}


DATATYPES = _types()


def datatype(name: str, what: str) -> DataType:
    found = DATATYPES.get(name)
    if found is None:
        raise InvalidInputError(f"{what} has datatype {name!r}, which is not one of the "
                                f"protocol's: {', '.join(DATATYPES)}")
    return found


@dataclass
class Tensor:
    """One named tensor: `data` has the shape and datatype given (BYTES: an object array of
    bytes)."""

    name: str
    datatype: str
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.data.shape)


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    parameters: Parameters = field(default_factory=dict)


@dataclass
class InferRequest:
    model_name: str
    model_version: str  # "" : the server's choice
    inputs: list[Tensor]
    outputs: list[RequestedOutput]  # empty: every output
    id: str = ""
    parameters: Parameters = field(default_factory=dict)


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str = ""
    parameters: Parameters = field(default_factory=dict)


# --- shapes and element counts -----------------------------------------------------------


def check_shape(shape: Iterable[Any], what: str) -> tuple[int, ...]:
    dims = list(shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise InvalidInputError(f"{what} has shape {dims}: every dimension must be a "
                                "non-negative integer")
    return tuple(dims)


def _count_mismatch(what: str, shape: tuple[int, ...], got: int, unit: str = "elements"
                    ) -> InvalidInputError:
    return InvalidInputError(f"{what} has shape {list(shape)} ({math.prod(shape)} elements) "
                             f"but its data holds {got} {unit}")


# --- BYTES framing -------------------------------------------------------------------------


_LENGTH = struct.Struct("<I")


def serialize_bytes(elements: Iterable[bytes]) -> bytes:
    """BYTES elements as raw bytes: each a 4-byte little-endian length, then the bytes."""
    parts: list[bytes] = []
    for element in elements:
        parts.append(_LENGTH.pack(len(element)))
        parts.append(element)
    return b"".join(parts)


def deserialize_bytes(raw: bytes | memoryview, count: int, what: str) -> list[bytes]:
    """Exactly `count` length-prefixed elements, using all of `raw`."""
    view = memoryview(raw)
    out: list[bytes] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < 4:
            raise InvalidInputError(f"{what}: BYTES data ends inside an element's 4-byte "
                                    "length prefix")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if length > len(view) - offset:
            raise InvalidInputError(f"{what}: BYTES element {len(out)} claims {length} bytes "
                                    f"but only {len(view) - offset} remain")
        out.append(bytes(view[offset : offset + length]))
        offset += length
    if len(out) != count:
        raise InvalidInputError(f"{what}: its shape needs {count} BYTES elements but the data "
                                f"holds {len(out)}")
    return out


def _object_array(elements: Sequence[bytes], shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(shape)


# --- one tensor ------------------------------------------------------------------------------


def from_raw(name: str, type_name: str, shape: Iterable[Any], raw: bytes | memoryview,
             what: str) -> Tensor:
    """A tensor from raw bytes (gRPC raw contents, HTTP binary data)."""
    dt = datatype(type_name, what)
    dims = check_shape(shape, what)
    count = math.prod(dims)
    if dt.name == "BYTES":
        return Tensor(name, dt.name, _object_array(deserialize_bytes(raw, count, what), dims))
    if len(raw) != count * dt.itemsize:
        raise _count_mismatch(what, dims, len(raw), f"bytes, not {count} x {dt.itemsize}")
    array = np.frombuffer(raw, dtype=np.uint8 if dt.name == "BOOL" else dt.dtype)
    if dt.name == "BOOL":
        array = array != 0
    return Tensor(name, dt.name, array.reshape(dims))


def _cast(values: np.ndarray, dt: DataType, what: str) -> np.ndarray:
    """`values` as `dt`, refusing integers that do not fit (no silent wrap-around)."""
    cast = values.astype(dt.dtype)
    if dt.dtype.kind in "iu" and not np.array_equal(cast, values):
        raise InvalidInputError(f"{what}: a value does not fit datatype {dt.name}")
    return cast


def from_contents(name: str, type_name: str, shape: Iterable[Any],
                  contents: pb.InferTensorContents, what: str) -> Tensor:
    """A tensor from the typed repeated field of gRPC `InferTensorContents`."""
    dt = datatype(type_name, what)
    dims = check_shape(shape, what)
    if dt.contents is None:
        raise InvalidInputError(f"{what}: {dt.name} has no typed contents field; send it in "
                                "raw_input_contents")
    values = getattr(contents, dt.contents)
    if len(values) != math.prod(dims):
        raise _count_mismatch(what, dims, len(values), f"elements in {dt.contents}")
    if dt.name == "BYTES":
        return Tensor(name, dt.name, _object_array(list(values), dims))
    return Tensor(name, dt.name, _cast(np.asarray(values), dt, what).reshape(dims))


def from_json_data(name: str, type_name: str, shape: Iterable[Any], data: Any,
                   what: str) -> Tensor:
    """A tensor from JSON `data`: flat or nested lists in row-major order (BYTES: strings)."""
    dt = datatype(type_name, what)
    dims = check_shape(shape, what)
    if not isinstance(data, list):
        raise InvalidInputError(f"{what}: data must be a JSON array")
    try:
        values = np.asarray(data)
    except ValueError:
        raise InvalidInputError(f"{what}: data is a ragged array; send it flat or as nested "
                                "lists of equal lengths") from None
    if values.size != math.prod(dims):
        raise _count_mismatch(what, dims, int(values.size))
    if values.size and values.dtype.kind not in dt.json_kinds:
        expected = {"b": "true/false", "iu": "integers", "iuf": "numbers", "U": "strings"}
        raise InvalidInputError(f"{what}: {dt.name} data must be "
                                f"{expected[dt.json_kinds]}; send other bytes as binary data")
    values = values.reshape(-1)
    if dt.name == "BYTES":
        return Tensor(name, dt.name, _object_array([str(v).encode() for v in values], dims))
    return Tensor(name, dt.name, _cast(values, dt, what).reshape(dims))


def to_raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return serialize_bytes(tensor.data.reshape(-1))
    dt = DATATYPES[tensor.datatype]
    return np.ascontiguousarray(tensor.data, dtype=dt.dtype).tobytes()


def to_json_data(tensor: Tensor) -> list[Any]:
    """The elements, flattened, as JSON values (BYTES as UTF-8 strings)."""
    flat = tensor.data.reshape(-1)
    if tensor.datatype == "BYTES":
        try:
            return [bytes(v).decode() for v in flat]
        except UnicodeDecodeError:
            raise InvalidInputError(f"output {tensor.name!r} holds bytes that are not UTF-8; "
                                    "request it as binary data") from None
    return list(flat.tolist())


# --- parameters --------------------------------------------------------------------------


def param_value(parameter: pb.InferParameter) -> Param:
    kind = parameter.WhichOneof("parameter_choice")
    return "" if kind is None else getattr(parameter, kind)


def set_param(parameter: pb.InferParameter, value: Param) -> None:
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = str(value)


def grpc_params(parameters: Mapping[str, pb.InferParameter]) -> Parameters:
    return {key: param_value(value) for key, value in parameters.items()}


def json_params(value: Any, what: str) -> Parameters:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(v, (bool, int, float, str)) for v in value.values()):
        raise InvalidInputError(f"{what} parameters must be an object of strings, numbers and "
                                "booleans")
    return dict(value)


# --- gRPC ----------------------------------------------------------------------------------


def grpc_request(request: pb.ModelInferRequest) -> InferRequest:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(f"raw_input_contents has {len(raw)} entries for "
                                f"{len(request.inputs)} inputs; send one per input, in order")
    inputs = []
    for i, tensor in enumerate(request.inputs):
        what = f"input {tensor.name!r}"
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInputError(f"{what} sets contents although the request uses "
                                        "raw_input_contents; use one or the other")
            parsed = from_raw(tensor.name, tensor.datatype, tensor.shape, raw[i], what)
        else:
            parsed = from_contents(tensor.name, tensor.datatype, tensor.shape,
                                   tensor.contents, what)
        parsed.parameters = grpc_params(tensor.parameters)
        inputs.append(parsed)
    outputs = [RequestedOutput(o.name, grpc_params(o.parameters)) for o in request.outputs]
    return InferRequest(request.model_name, request.model_version, inputs, outputs,
                        request.id, grpc_params(request.parameters))


def grpc_response(response: InferResponse) -> pb.ModelInferResponse:
    """Outputs go as raw_output_contents, as Triton answers (every OIP client reads them)."""
    message = pb.ModelInferResponse(model_name=response.model_name,
                                    model_version=response.model_version, id=response.id)
    for key, value in response.parameters.items():
        set_param(message.parameters[key], value)
    for tensor in response.outputs:
        out = message.outputs.add(name=tensor.name, datatype=tensor.datatype,
                                  shape=tensor.shape)
        for key, value in tensor.parameters.items():
            set_param(out.parameters[key], value)
        message.raw_output_contents.append(to_raw(tensor))
    return message


# --- HTTP ----------------------------------------------------------------------------------


def _json_object(data: bytes | memoryview, what: str) -> dict[str, Any]:
    try:
        value = json.loads(bytes(data))
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object")
    return value


def _header_length(header: str | None, body_length: int) -> int:
    if header is None:
        return body_length
    try:
        length = int(header)
    except ValueError:
        length = -1
    if not 0 <= length <= body_length:
        raise InvalidInputError(f"{HEADER_LENGTH} is {header!r}; it must be the JSON header's "
                                f"size in bytes, at most the body's {body_length}")
    return length


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string")
    return value


def http_request(model_name: str, model_version: str, body: bytes, header_length: str | None
                 ) -> InferRequest:
    """An inference request from an HTTP body: JSON, then (binary tensor data extension) the
    binary inputs in the order of `inputs`."""
    view = memoryview(body)
    split = _header_length(header_length, len(view))
    obj = _json_object(view[:split], "the inference request")
    binary = view[split:]
    offset = 0
    specs = obj.get("inputs")
    if not isinstance(specs, list) or not specs:
        raise InvalidInputError("the inference request needs a non-empty 'inputs' array")
    inputs = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise InvalidInputError(f"inputs[{i}] must be a JSON object")
        name = _string(spec.get("name"), f"inputs[{i}].name")
        what = f"input {name!r}"
        type_name = _string(spec.get("datatype"), f"{what} datatype")
        shape = spec.get("shape")
        if not isinstance(shape, list):
            raise InvalidInputError(f"{what} needs a 'shape' array")
        params = json_params(spec.get("parameters"), what)
        size = params.pop(BINARY_SIZE, None)
        if size is not None:
            if "data" in spec:
                raise InvalidInputError(f"{what} has both data and {BINARY_SIZE}; send one")
            if not isinstance(size, int) or isinstance(size, bool) or not (
                    0 <= size <= len(binary) - offset):
                raise InvalidInputError(f"{what}: {BINARY_SIZE} is {size!r} but "
                                        f"{len(binary) - offset} bytes of binary data remain")
            tensor = from_raw(name, type_name, shape, binary[offset : offset + size], what)
            offset += size
        elif "data" in spec:
            tensor = from_json_data(name, type_name, shape, spec["data"], what)
        else:
            raise InvalidInputError(f"{what} has neither data nor {BINARY_SIZE}")
        tensor.parameters = params
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidInputError(f"{len(binary) - offset} bytes of binary data follow the JSON "
                                f"header that no input's {BINARY_SIZE} accounts for")
    outputs = []
    for i, spec in enumerate(obj.get("outputs") or []):
        if not isinstance(spec, dict):
            raise InvalidInputError(f"outputs[{i}] must be a JSON object")
        name = _string(spec.get("name"), f"outputs[{i}].name")
        outputs.append(RequestedOutput(name, json_params(spec.get("parameters"),
                                                         f"output {name!r}")))
    request_id = obj.get("id", "")
    return InferRequest(model_name, model_version, inputs, outputs,
                        _string(request_id, "id"), json_params(obj.get("parameters"), "request"))


def binary_outputs(request: InferRequest) -> set[str]:
    """Outputs to return as binary data: each output's `binary_data`, else the request's
    `binary_data_output` (what tritonclient sets when it names no outputs)."""
    default = request.parameters.get(BINARY_OUTPUTS) is True
    if not request.outputs:
        return {"*"} if default else set()
    return {o.name for o in request.outputs if o.parameters.get(BINARY, default) is True}


def http_response(response: InferResponse, binary: set[str]) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length (for the
    Inference-Header-Content-Length header)."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in response.outputs:
        out: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype,
                               "shape": list(tensor.shape)}
        params: dict[str, Any] = dict(tensor.parameters)
        if "*" in binary or tensor.name in binary:
            blob = to_raw(tensor)
            params[BINARY_SIZE] = len(blob)
            blobs.append(blob)
        else:
            out["data"] = to_json_data(tensor)
        if params:
            out["parameters"] = params
        outputs.append(out)
    obj: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        obj["model_version"] = response.model_version
    if response.id:
        obj["id"] = response.id
    if response.parameters:
        obj["parameters"] = response.parameters
    obj["outputs"] = outputs
    header = json.dumps(obj, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
