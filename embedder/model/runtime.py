"""Run an exported embedding model: tokenize, pad to the longest, run onnxruntime, pool, normalise.

A model directory is the usual export layout:

    model.onnx (or onnx/model.onnx)   inputs input_ids, attention_mask[, token_type_ids];
                                      first output [batch, sequence, hidden] token states
    tokenizer.json                    a Hugging Face `tokenizers` file
    modules.json, 1_Pooling/config.json, sentence_bert_config.json    sentence-transformers
                                      configs, optional: pooling, Normalize, max_seq_length

Pooling runs in numpy over the real tokens (the graph returns token states); vectors come back
un-normalised so that normalisation stays a per-request choice (`normalize`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from searchgw.errors import InvalidArgument

Pooling = Literal["mean", "cls", "max"]
EXECUTION_PROVIDER = "CPUExecutionProvider"
_ONNX_FILES = ("model.onnx", "onnx/model.onnx")
_INPUT_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
#: tokenizer_config.json uses a huge model_max_length to mean "not set".
_UNSET_MAX_LENGTH = 1_000_000


@dataclass(frozen=True)
class ModelSpec:
    """What a loaded model is: the facts GetModelInfo reports."""

    name: str
    dimension: int
    max_input_tokens: int
    pooling: Pooling
    normalize_default: bool
    execution_provider: str
    source: Path


@dataclass(frozen=True, slots=True, eq=False)
class Encoded:
    """One tokenized text, unpadded, ready for `EmbeddingModel.run`."""

    ids: np.ndarray  # int64 [n_tokens], special tokens included
    n_tokens: int
    truncated: bool


def create_session(onnx_path: Path, intra_op_threads: int | None = None) -> ort.InferenceSession:
    """The onnxruntime session a model runs in: CPU, every graph optimisation, sequential execution,
    one inter-op thread and `intra_op_threads` threads per operator (None or 0: one per core); the
    intra-op threads stop spinning when a run ends."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    # The intra-op threads spin between the operators of one run (that is what makes them fast), but
    # not after it: in a server the event loop needs the core between runs, and a thread spinning
    # there for nothing takes it.
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(onnx_path), options, providers=[EXECUTION_PROVIDER])


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row (last axis) to unit L2 length; all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    scaled: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return scaled


class EmbeddingModel:
    """A tokenizer and an onnxruntime session for one embedding model.

    `encode` may run on any thread; `run` is meant for one executor thread at a time.
    """

    def __init__(self, spec: ModelSpec, session: ort.InferenceSession, tokenizer: Tokenizer,
                 truncating_tokenizer: Tokenizer, pad_id: int) -> None:
        self.spec = spec
        self._session = session
        self._tokenizer = tokenizer
        self._truncating_tokenizer = truncating_tokenizer
        self._pad_id = pad_id
        inputs = {i.name: i.type for i in session.get_inputs()}
        unknown = set(inputs) - {"input_ids", "attention_mask", "token_type_ids"}
        if "input_ids" not in inputs or unknown:
            raise ValueError(f"{spec.source}: the graph's inputs {sorted(inputs)} are not "
                             "input_ids[, attention_mask][, token_type_ids]")
        self._id_dtype = _INPUT_DTYPES[inputs["input_ids"]]
        self._mask_dtype = _INPUT_DTYPES.get(inputs.get("attention_mask", ""))
        self._type_dtype = _INPUT_DTYPES.get(inputs.get("token_type_ids", ""))
        self._output_name = session.get_outputs()[0].name

    @classmethod
    def load(cls, model_dir: Path | str, name: str | None = None, *,
             intra_op_threads: int | None = None) -> EmbeddingModel:
        """Load a model directory (see the module docstring). `name` defaults to the directory's name;
        `intra_op_threads` None or 0 means one thread per core."""
        model_dir = Path(model_dir).resolve()
        onnx_path = next((model_dir / f for f in _ONNX_FILES if (model_dir / f).is_file()), None)
        if onnx_path is None:
            raise FileNotFoundError(f"{model_dir}: no {' or '.join(_ONNX_FILES)}")
        tokenizer_path = model_dir / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise FileNotFoundError(f"{model_dir}: no tokenizer.json")

        session = create_session(onnx_path, intra_op_threads)
        output = session.get_outputs()[0]
        if len(output.shape) != 3:
            raise ValueError(f"{onnx_path}: the first output {output.name} is not [batch, sequence, hidden]")

        max_tokens = _max_input_tokens(model_dir)
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        pad_id = tokenizer.padding["pad_id"] if tokenizer.padding else 0
        tokenizer.no_padding()
        tokenizer.no_truncation()
        truncating_tokenizer = Tokenizer.from_file(str(tokenizer_path))
        truncating_tokenizer.no_padding()
        truncating_tokenizer.enable_truncation(max_length=max_tokens)

        spec = ModelSpec(
            name=name or model_dir.name,
            dimension=_dimension(model_dir, output.shape[2]),
            max_input_tokens=max_tokens,
            pooling=_pooling(model_dir),
            normalize_default=_has_normalize_module(model_dir),
            execution_provider=session.get_providers()[0],
            source=model_dir,
        )
        return cls(spec, session, tokenizer, truncating_tokenizer, pad_id)

    def encode(self, texts: Sequence[str], truncate: bool) -> list[Encoded]:
        """Tokenize `texts` (special tokens added, no padding).

        An input over `spec.max_input_tokens` is cut to the limit when `truncate` is set and is
        refused with InvalidArgument naming `texts[i]` and its token count otherwise.
        """
        limit = self.spec.max_input_tokens
        encodings = self._tokenizer.encode_batch(list(texts))
        too_long = [i for i, encoding in enumerate(encodings) if len(encoding.ids) > limit]
        if too_long and not truncate:
            i = too_long[0]
            raise InvalidArgument(
                f"texts[{i}]", f"the text is {len(encodings[i].ids)} tokens, over the model's limit of {limit} "
                               "tokens; shorten it or allow truncation")
        # Re-encoding with the tokenizer's own truncation keeps its special tokens ([CLS] ... [SEP]) right.
        for i, encoding in zip(too_long, self._truncating_tokenizer.encode_batch([texts[i] for i in too_long])):
            encodings[i] = encoding
        cut = set(too_long)
        return [Encoded(np.array(encoding.ids, dtype=np.int64), len(encoding.ids), truncated=i in cut)
                for i, encoding in enumerate(encodings)]

    def run(self, batch: Sequence[Encoded]) -> np.ndarray:
        """Pooled, un-normalised vectors, float32 [len(batch), dimension], padding to the longest input."""
        if not batch:
            return np.empty((0, self.spec.dimension), dtype=np.float32)
        lengths = np.fromiter((item.n_tokens for item in batch), dtype=np.int64, count=len(batch))
        real = np.arange(lengths.max()) < lengths[:, None]  # bool [batch, longest]
        ids = np.full(real.shape, self._pad_id, dtype=self._id_dtype)
        ids[real] = np.concatenate([item.ids for item in batch])
        feed: dict[str, Any] = {"input_ids": ids}
        if self._mask_dtype is not None:
            feed["attention_mask"] = real.astype(self._mask_dtype)
        if self._type_dtype is not None:
            feed["token_type_ids"] = np.zeros(real.shape, dtype=self._type_dtype)
        states = self._session.run([self._output_name], feed)[0]
        return _pool(states, real, lengths, self.spec.pooling)

    def with_own_session(self, intra_op_threads: int | None = None) -> EmbeddingModel:
        """The same model (spec, tokenizers) on an onnxruntime session of its own, so that two batches
        can run at once, one per session (each session holds its own copy of the weights)."""
        onnx_path = next(self.spec.source / f for f in _ONNX_FILES if (self.spec.source / f).is_file())
        return EmbeddingModel(self.spec, create_session(onnx_path, intra_op_threads), self._tokenizer,
                              self._truncating_tokenizer, self._pad_id)


def _pool(states: np.ndarray, real: np.ndarray, lengths: np.ndarray, pooling: Pooling) -> np.ndarray:
    """Pool token states [batch, longest, hidden] over the real tokens only."""
    if pooling == "cls":
        pooled = states[:, 0]
    elif pooling == "mean":
        # [batch, 1, longest] @ [batch, longest, hidden]: one batched GEMV, no masked copy of the states.
        sums = (real[:, None, :].astype(np.float32) @ states)[:, 0]
        pooled = sums / lengths[:, None].astype(np.float32)
    else:
        states[~real] = -np.inf
        pooled = states.max(axis=1)
    return np.ascontiguousarray(pooled, dtype=np.float32)


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or {} when there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else {}


def _modules(model_dir: Path) -> list[dict[str, Any]]:
    """The sentence-transformers pipeline in modules.json, or [] without one."""
    path = model_dir / "modules.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _pooling_config(model_dir: Path) -> tuple[Path, dict[str, Any]]:
    """(path, content) of the Pooling module's config; 1_Pooling/config.json when modules.json names none."""
    pooling_dir = next((m.get("path", "") for m in _modules(model_dir) if m.get("type", "").endswith(".Pooling")),
                       "1_Pooling")
    path = model_dir / pooling_dir / "config.json"
    return path, _json_object(path)


def _pooling(model_dir: Path) -> Pooling:
    """The Pooling module's mode; mean without one, as sentence-transformers does for a bare model."""
    path, config = _pooling_config(model_dir)
    if not config:
        return "mean"
    modes = [key.removeprefix("pooling_mode_") for key, on in config.items() if key.startswith("pooling_mode_") and on]
    names = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}
    if len(modes) != 1 or modes[0] not in names:
        raise ValueError(f"{path}: pooling {modes} is not exactly one of cls_token, mean_tokens or max_tokens")
    return names[modes[0]]  # type: ignore[return-value]


def _has_normalize_module(model_dir: Path) -> bool:
    return any(m.get("type", "").endswith(".Normalize") for m in _modules(model_dir))


def _max_input_tokens(model_dir: Path) -> int:
    """sentence-transformers' max_seq_length, else the tokenizer's model_max_length, else the position table."""
    limit = _json_object(model_dir / "sentence_bert_config.json").get("max_seq_length")
    if not limit:
        limit = _json_object(model_dir / "tokenizer_config.json").get("model_max_length")
        if limit and limit >= _UNSET_MAX_LENGTH:
            limit = None
    if not limit:
        limit = _json_object(model_dir / "config.json").get("max_position_embeddings")
    if not limit:
        raise ValueError(f"{model_dir}: no max_seq_length, model_max_length or max_position_embeddings "
                         "to limit the input length")
    return int(limit)


def _dimension(model_dir: Path, output_dim: int | str | None) -> int:
    """The vector size: the graph's static hidden size, else the Pooling config's, else config.json's."""
    if isinstance(output_dim, int):
        return output_dim
    dimension = (_pooling_config(model_dir)[1].get("word_embedding_dimension")
                 or _json_object(model_dir / "config.json").get("hidden_size"))
    if not dimension:
        raise ValueError(f"{model_dir}: cannot tell the embedding dimension")
    return int(dimension)
