"""What the VectorBackend tests share (test_backend_*.py): small real collections and a recording sleep."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from searchgw.gateway.backends import CollectionSpec, Point, VectorBackend

REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 8
UUID_5 = "6f1c2d4e-8a3b-4c5d-9e7f-0a1b2c3d4e5f"


def unit_vectors(count: int, dim: int = DIM, seed: int = 7) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def spec(name: str = "c", **overrides) -> CollectionSpec:
    return CollectionSpec(**{"name": name, "dimension": DIM, "embedding_model": "model-a", **overrides})


async def filled(backend: VectorBackend, count: int = 30, name: str = "c") -> np.ndarray:
    """A collection of `count` random unit vectors with ids 0..count-1 and payload {"i": id}."""
    vectors = unit_vectors(count)
    await backend.create_collection(spec(name))
    await backend.upsert(name, [Point(id=i, vector=v, payload={"i": i}) for i, v in enumerate(vectors)])
    return vectors


def cosine_ranking(vectors: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = vectors @ (query / np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")
    return order, scores[order]


class RecordingSleep:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


async def let_queue() -> None:
    """Let every ready task run up to its next wait."""
    for _ in range(3):
        await asyncio.sleep(0)
