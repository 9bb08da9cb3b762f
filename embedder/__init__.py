"""The ONNX embedding server (searchgw.v1.EmbedService) and its async client."""
