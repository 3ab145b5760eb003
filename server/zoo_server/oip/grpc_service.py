"""`inference.GRPCInferenceService`, the Open Inference Protocol over gRPC, on an
`InferenceBackend`.

Registered like the zoo.v1 services (`zoo_server.handlers.generic_handler`), so requests
that do not parse, the status table, metrics, logs and the bearer token apply to it the
same way. Handlers raise typed exceptions and never abort themselves.
"""

from __future__ import annotations

from typing import Any

import grpc

from zoo_oip import grpc_service_pb2 as pb
from zoo_server.oip import tensors
from zoo_server.oip.interface import (
    EXTENSIONS,
    SERVER_NAME,
    Call,
    InferenceBackend,
    ModelMetadata,
    server_version,
)
from zoo_server.services import deadline_of

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# Liveness and readiness answer without the bearer token, as the standard health service
# does (orchestrators probe them without credentials).
OPEN_METHODS = tuple(f"/{SERVICE.full_name}/{name}" for name in ("ServerLive", "ServerReady"))


def call_of(context: grpc.ServicerContext) -> Call:
    return Call(deadline_of(context), context.is_active)


def metadata_proto(meta: ModelMetadata) -> pb.ModelMetadataResponse:
    def tensor(spec: Any) -> pb.ModelMetadataResponse.TensorMetadata:
        return pb.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=spec.datatype,
                                                       shape=spec.shape)

    return pb.ModelMetadataResponse(name=meta.name, versions=meta.versions,
                                    platform=meta.platform,
                                    inputs=[tensor(s) for s in meta.inputs],
                                    outputs=[tensor(s) for s in meta.outputs])


class GRPCInferenceService:
    def __init__(self, backend: InferenceBackend):
        self.backend = backend

    def ServerLive(self, request: pb.ServerLiveRequest, context: Any  # noqa: N802
                   ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: pb.ServerReadyRequest, context: Any  # noqa: N802
                    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.backend.server_ready())

    def ModelReady(self, request: pb.ModelReadyRequest, context: Any  # noqa: N802
                   ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.backend.model_ready(request.name,
                                                                    request.version))

    def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any  # noqa: N802
                       ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=server_version(),
                                         extensions=EXTENSIONS)

    def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any  # noqa: N802
                      ) -> pb.ModelMetadataResponse:
        return metadata_proto(self.backend.model_metadata(request.name, request.version))

    def ModelInfer(self, request: pb.ModelInferRequest,  # noqa: N802
                   context: grpc.ServicerContext) -> pb.ModelInferResponse:
        parsed = tensors.grpc_request(request)
        return tensors.grpc_response(self.backend.infer(parsed, call_of(context)))
