"""Open Inference Protocol (KServe v2) gRPC code, generated from proto/oip (make proto)."""
