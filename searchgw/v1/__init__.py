"""Generated protobuf and gRPC code for package searchgw.v1 (do not edit; see scripts/gen_protos.py)."""
