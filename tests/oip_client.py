"""Drives a server through a real Open Inference Protocol client, as an outside user would.

Runs under the OIP client venv (.venv-oip: tritonclient and kserve, which pin protobuf < 7),
never under Zoo's; imports nothing of Zoo. tests/test_oip.py runs it as

    .venv-oip/bin/python tests/oip_client.py CLIENT URL < ops.json > results.json

CLIENT is triton-grpc, triton-http, kserve-grpc or kserve-rest (one per process: tritonclient
and kserve both register the protobuf package `inference`). `ops.json` is
{"token": ..., "ca": ..., "ops": [...]}; each op is one call (with its own "token" if it
names one, null for none), and its result is either
{"value": ...} or {"error": {"status": ..., "message": ...}}: the script observes, the
test asserts. An infer op names its input as {"name", "datatype", "shape"} with "file"
(each path's bytes, one BYTES element each), "npy" (an array file) or "data" (a list), and
may ask for "outputs", "parameters", "binary" (inputs and outputs as binary data, HTTP).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def input_array(spec: dict[str, Any]) -> np.ndarray:
    if "file" in spec:
        elements = [Path(p).read_bytes() for p in spec["file"]]
        array = np.empty(len(elements), dtype=object)
        array[:] = elements
        return array.reshape(spec["shape"])
    if "npy" in spec:
        return np.load(spec["npy"])
    dtype = {"BYTES": object, "FP32": np.float32, "INT32": np.int32}[spec["datatype"]]
    return np.asarray(spec["data"], dtype=dtype).reshape(spec["shape"])


def headers(op: dict[str, Any], token: str | None) -> dict[str, str] | None:
    token = op.get("token", token)
    return {"authorization": f"Bearer {token}"} if token else None


def jsonable(array: np.ndarray) -> dict[str, Any]:
    flat = [v.decode() if isinstance(v, bytes) else v for v in array.reshape(-1).tolist()]
    return {"shape": list(array.shape), "data": flat}


class Triton:
    def __init__(self, kind: str, url: str, token: str | None, ca: str | None):
        self.kind, self.token = kind, token
        if kind == "triton-grpc":
            import tritonclient.grpc as client
            self.client = client.InferenceServerClient(url, ssl=ca is not None,
                                                       root_certificates=ca)
        else:
            import tritonclient.http as client

            options: dict[str, Any] = {}
            if ca is not None:
                import gevent.ssl

                options = {"ssl": True, "ssl_context_factory": gevent.ssl.create_default_context,
                           "ssl_options": {"ca_certs": ca}}
            self.client = client.InferenceServerClient(url, **options)
        self.module = client
        from tritonclient.utils import InferenceServerException

        self.errors: tuple[type[BaseException], ...] = (InferenceServerException,)

    def error(self, e: BaseException) -> dict[str, Any]:
        return {"status": str(e.status()), "message": e.message()}  # type: ignore[attr-defined]

    def run(self, op: dict[str, Any]) -> Any:
        c, h, name = self.client, headers(op, self.token), op.get("model", "")
        if op["op"] == "live":
            return c.is_server_live(headers=h)
        if op["op"] == "ready":
            return c.is_server_ready(headers=h)
        if op["op"] == "model_ready":
            return c.is_model_ready(name, op.get("version", ""), headers=h)
        if op["op"] == "server_metadata":
            meta = c.get_server_metadata(headers=h)
            return meta if isinstance(meta, dict) else {
                "name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}
        if op["op"] == "model_metadata":
            meta = c.get_model_metadata(name, op.get("version", ""), headers=h)
            if isinstance(meta, dict):
                return meta
            tensors = lambda ts: [{"name": t.name, "datatype": t.datatype,  # noqa: E731
                                   "shape": list(t.shape)} for t in ts]
            return {"name": meta.name, "versions": list(meta.versions),
                    "platform": meta.platform, "inputs": tensors(meta.inputs),
                    "outputs": tensors(meta.outputs)}
        assert op["op"] == "infer"
        spec = op["input"]
        tensor = self.module.InferInput(spec["name"], spec["shape"], spec["datatype"])
        binary = op.get("binary", True)
        array = input_array(spec)
        if self.kind == "triton-http":
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
        outputs = None
        if op.get("outputs"):
            outputs = [self.module.InferRequestedOutput(o, binary_data=binary)
                       if self.kind == "triton-http" else self.module.InferRequestedOutput(o)
                       for o in op["outputs"]]
        result = c.infer(name, [tensor], model_version=op.get("version", ""), outputs=outputs,
                         request_id=op.get("id", ""), parameters=op.get("parameters"),
                         headers=h)
        response = result.get_response()
        if not isinstance(response, dict):
            response = {"id": response.id, "model_name": response.model_name,
                        "model_version": response.model_version,
                        "outputs": [{"name": o.name} for o in response.outputs]}
        return {"id": response.get("id", ""), "model_name": response["model_name"],
                "model_version": response.get("model_version", ""),
                "outputs": {o["name"]: jsonable(result.as_numpy(o["name"]))
                            for o in response["outputs"]}}


class KServe:
    """KServe's asyncio clients, each call run to completion."""

    def __init__(self, kind: str, url: str, token: str | None, ca: str | None):
        import grpc
        import httpx
        from kserve import InferenceRESTClient, InferInput, InferRequest
        from kserve.inference_client import RESTConfig

        self.kind, self.url, self.token = kind, url, token
        self.types = (InferInput, InferRequest)
        self.loop = asyncio.new_event_loop()
        if kind == "kserve-grpc":
            self.client: Any = self.loop.run_until_complete(self._grpc(url, ca))
            self.errors: tuple[type[BaseException], ...] = (grpc.RpcError,)
        else:
            self.client = InferenceRESTClient(RESTConfig(protocol="v2", verify=ca or True))
            self.errors = (httpx.HTTPStatusError,)
        self.base = f"{'https' if ca else 'http'}://{url}"

    async def _grpc(self, url: str, ca: str | None) -> Any:
        from kserve import InferenceGRPCClient

        return InferenceGRPCClient(url, use_ssl=ca is not None, root_certificates=ca,
                                   retries=0)

    def error(self, e: BaseException) -> dict[str, Any]:
        if self.kind == "kserve-grpc":
            return {"status": str(e.code()), "message": e.details()}  # type: ignore[attr-defined]
        response = e.response  # type: ignore[attr-defined]
        return {"status": str(response.status_code), "message": response.json().get("error")}

    def run(self, op: dict[str, Any]) -> Any:
        return self.loop.run_until_complete(self._run(op))

    async def _run(self, op: dict[str, Any]) -> Any:
        c, name = self.client, op.get("model", "")
        http_headers = headers(op, self.token)
        metadata = list(http_headers.items()) if http_headers else None
        grpc_side = self.kind == "kserve-grpc"
        if op["op"] == "live":
            return await (c.is_server_live(headers=metadata) if grpc_side
                          else c.is_server_live(self.base, headers=http_headers))
        if op["op"] == "ready":
            return await (c.is_server_ready(headers=metadata) if grpc_side
                          else c.is_server_ready(self.base, headers=http_headers))
        if op["op"] == "model_ready":
            return await (c.is_model_ready(name, headers=metadata) if grpc_side
                          else c.is_model_ready(self.base, name, headers=http_headers))
        assert op["op"] == "infer", f"{self.kind} has no {op['op']}"
        from kserve.protocol.infer_type import RequestedOutput

        InferInput, InferRequest = self.types
        spec = op["input"]
        tensor = InferInput(spec["name"], spec["shape"], spec["datatype"])
        tensor.set_data_from_numpy(input_array(spec), binary_data=op.get("binary", True))
        outputs = [RequestedOutput(o) for o in op.get("outputs") or []] or None
        request = InferRequest(name, [tensor], request_id=op.get("id") or None,
                               parameters=op.get("parameters"), request_outputs=outputs,
                               model_version=op.get("version") or None)
        if grpc_side:
            result = await c.infer(request, headers=metadata)
        else:
            result = await c.infer(self.base, request, model_name=name, headers=http_headers)
        return {"id": result.id or "", "model_name": result.model_name,
                "model_version": result.model_version or "",
                "outputs": {o.name: jsonable(o.as_numpy()) for o in result.outputs}}


def main() -> None:
    kind, url = sys.argv[1], sys.argv[2]
    plan = json.load(sys.stdin)
    client_type = Triton if kind.startswith("triton") else KServe
    client = client_type(kind, url, plan.get("token"), plan.get("ca"))
    results = []
    for op in plan["ops"]:
        try:
            results.append({"value": client.run(op)})
        except client.errors as e:
            results.append({"error": client.error(e)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
