"""Generated gRPC and protobuf code for the zoo.v1 API (make proto)."""
