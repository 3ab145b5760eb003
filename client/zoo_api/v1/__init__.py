"""zoo.v1 messages and services, generated from proto/zoo_api/v1 (make proto)."""
