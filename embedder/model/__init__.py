"""The embedding model layer: ONNX export from safetensors (no torch) and the runtime around onnxruntime.

    export    BERT safetensors -> fp32 ONNX graph, built with the onnx helper API
    runtime   EmbeddingModel: tokenize, pad to the longest, run, pool; normalize()
    catalog   the built-in all-MiniLM-L6-v2 (fp32 export, int8 variant) as cached model directories

Domain code: imports neither grpc nor torch.
"""

from searchgw.embedder.model.catalog import (
    DEFAULT_MODEL_NAME,
    ModelPackageMissing,
    default_model_dir,
    default_source_dir,
    int8_model_dir,
    load_default_model,
)
from searchgw.embedder.model.export import BertConfig, build_bert_model, export_bert_onnx
from searchgw.embedder.model.runtime import (
    Chunked,
    EmbeddingModel,
    Encoded,
    ModelSpec,
    Pooling,
    TextChunk,
    create_session,
    normalize,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "BertConfig",
    "Chunked",
    "EmbeddingModel",
    "Encoded",
    "ModelPackageMissing",
    "ModelSpec",
    "TextChunk",
    "Pooling",
    "build_bert_model",
    "create_session",
    "default_model_dir",
    "default_source_dir",
    "export_bert_onnx",
    "int8_model_dir",
    "load_default_model",
    "normalize",
]
