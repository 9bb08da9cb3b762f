"""A plain numpy BERT forward pass with sentence-transformers pooling: the oracle for the ONNX export,
and the diverse texts it is checked on.

Written from the BERT paper and the Hugging Face checkpoint layout, on purpose sharing nothing with
`embedder.model.export`: it runs one unpadded sequence at a time in float64, one head at a time, so
a mistake in the graph builder (or in its masking and padding) cannot cancel out here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

#: Over 256 tokens: the model's limit cuts it.
OVER_LONG_TEXT = "The committee reviewed every clause of the proposal before voting. " * 40
#: Texts to judge an export on: paraphrases, an unrelated text, several scripts, emoji, one
#: character, and an over-long text.
DIVERSE_TEXTS = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome, I loved every minute of it.",
    "Ein Mann isst Brot.",
    "Un homme mange du pain à la terrasse d'un café.",
    "一个男人在吃面包。",
    "Мужчина ест хлеб на кухне.",
    "رجل يأكل الخبز في المطبخ",
    "मनुष्य रसोई में रोटी खा रहा है।",
    "🍞🥖 breakfast time! 😋🎉",
    "x",
    OVER_LONG_TEXT,
)

_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = (centred**2).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * gamma + beta


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class ReferenceBert:
    """BERT encoder from `config.json` + `model.safetensors`, evaluated in float64."""

    def __init__(self, model_dir: Path) -> None:
        config = json.loads((Path(model_dir) / "config.json").read_text())
        self.heads = config["num_attention_heads"]
        self.layers = config["num_hidden_layers"]
        self.eps = config.get("layer_norm_eps", 1e-12)
        raw = load_file(Path(model_dir) / "model.safetensors")
        self.w = {name: value.astype(np.float64) for name, value in raw.items()}
        # torch's Linear stores [out, in]; keep each as a contiguous [in, out] for fast products.
        self.linear_in_out = {name.removesuffix(".weight"): np.ascontiguousarray(value.T)
                              for name, value in self.w.items()
                              if name.startswith("encoder.") and name.endswith(".weight") and value.ndim == 2}

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.linear_in_out[name] + self.w[f"{name}.bias"]

    def hidden_states(self, ids: Sequence[int]) -> np.ndarray:
        """Last hidden state [len(ids), hidden] of one sequence (all tokens real, token type 0)."""
        w, n = self.w, len(ids)
        x = (w["embeddings.word_embeddings.weight"][list(ids)]
             + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q = self._linear(x, f"{p}.attention.self.query")
            k = self._linear(x, f"{p}.attention.self.key")
            v = self._linear(x, f"{p}.attention.self.value")
            size = q.shape[1] // self.heads
            heads = []
            for h in range(self.heads):
                cols = slice(h * size, (h + 1) * size)
                weights = _softmax(q[:, cols] @ k[:, cols].T / math.sqrt(size))
                heads.append(weights @ v[:, cols])
            attended = self._linear(np.concatenate(heads, axis=1), f"{p}.attention.output.dense")
            x = _layer_norm(attended + x, w[f"{p}.attention.output.LayerNorm.weight"],
                            w[f"{p}.attention.output.LayerNorm.bias"], self.eps)
            inner = _gelu(self._linear(x, f"{p}.intermediate.dense"))
            x = _layer_norm(self._linear(inner, f"{p}.output.dense") + x, w[f"{p}.output.LayerNorm.weight"],
                            w[f"{p}.output.LayerNorm.bias"], self.eps)
        return x

    def embed(self, ids: Sequence[int], pooling: str = "mean") -> np.ndarray:
        """The pooled, un-normalised sentence vector of one sequence."""
        states = self.hidden_states(ids)
        if pooling == "mean":
            return states.mean(axis=0)
        if pooling == "cls":
            return states[0]
        if pooling == "max":
            return states.max(axis=0)
        raise ValueError(pooling)
