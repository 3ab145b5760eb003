"""zoo_client: the typed Python client of the Zoo gRPC API (zoo.v1).

Installs with grpcio and protobuf alone and never imports TensorFlow or Keras.
"""

from zoo_client.aio import AsyncZooClient
from zoo_client.client import ZooClient
from zoo_client.errors import (
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidInput,
    ModelNotFound,
    PermissionDenied,
    ResourceExhausted,
    ServerError,
    Unauthenticated,
    Unavailable,
    ZooClientError,
)
from zoo_client.types import (
    Dataset,
    FetchProgress,
    Job,
    JobEvent,
    ModelInfo,
    Prediction,
    WeightFile,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncZooClient",
    "Cancelled",
    "DataLoss",
    "Dataset",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FetchProgress",
    "InvalidInput",
    "Job",
    "JobEvent",
    "ModelInfo",
    "ModelNotFound",
    "PermissionDenied",
    "Prediction",
    "ResourceExhausted",
    "ServerError",
    "Unauthenticated",
    "Unavailable",
    "WeightFile",
    "ZooClient",
    "ZooClientError",
]
