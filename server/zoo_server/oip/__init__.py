"""The Open Inference Protocol (KServe v2, Triton's protocol) beside zoo.v1: gRPC
(`grpc_service`, on the server's gRPC port) and HTTP/REST (`http`, on --http-port), both
on one `InferenceBackend` (`interface`), which `backend` implements on the server's models.
`tensors` moves tensors in and out of the wire formats; `signatures` says which tensors
each kind of model takes and gives.
"""
