"""The search gateway: routing, rollouts, analysis, vector backends and the gRPC services over them."""
