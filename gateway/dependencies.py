"""The health of what the gateway depends on: the embedder and the vector backend. Free of gRPC.

A `DependencyMonitor` probes each dependency (the embedder: GetModelInfo; the backend: listing its
collections and aliases) every few seconds, each probe bounded by a timeout. When a dependency's
state changes, it logs one line and calls `on_change` (the server sets the `grpc.health.v1` entry
`searchgw.dependency.<name>` and the gauge `searchgw_dependency_up{dependency}`).

`EmbedderGate` wraps the gateway's `TextEmbedder`: while the embedder's last probe failed, every
call that needs it (text queries, text writes, creating a collection for a model) fails at once with
UNAVAILABLE naming the embedder, instead of each request waiting out its own connection attempt.
Vector searches and vector writes do not touch the embedder and keep working.

A dependency's state is unknown until its first probe; an unknown dependency is not gated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from searchgw.errors import Unavailable
from searchgw.gateway.embedding import ChunkedText, ChunkingOptions, TextEmbedder

log = logging.getLogger(__name__)

#: The health service name of a dependency is this prefix plus its name.
HEALTH_PREFIX = "searchgw.dependency."
EMBEDDER = "embedder"
BACKEND = "backend"
#: The shared rollout state (Redis, with --state redis).
STATE = "state"
#: How often dependencies are probed, and how long one probe may take.
PROBE_INTERVAL_S = 5.0
PROBE_TIMEOUT_S = 2.0

Probe = Callable[[], Awaitable[object]]


@dataclass
class Dependency:
    """One dependency: its name, where it is (for messages), how to probe it, and what the last probe said."""

    name: str
    target: str
    probe: Probe
    #: None until the first probe; then whether the last probe succeeded.
    up: bool | None = None
    #: Why the last probe failed ("" while up).
    detail: str = ""

    @property
    def health_service(self) -> str:
        return HEALTH_PREFIX + self.name


class DependencyMonitor:
    def __init__(self, dependencies: Sequence[Dependency], *,
                 on_change: Callable[[Dependency], Awaitable[None]] | None = None,
                 timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.dependencies = {d.name: d for d in dependencies}
        self._on_change = on_change
        self._timeout_s = timeout_s

    def get(self, name: str) -> Dependency | None:
        return self.dependencies.get(name)

    async def probe_once(self) -> None:
        """Probe every dependency (concurrently) and report the ones whose state changed."""
        await asyncio.gather(*(self._probe(d) for d in self.dependencies.values()))

    async def _probe(self, dependency: Dependency) -> None:
        try:
            await asyncio.wait_for(dependency.probe(), self._timeout_s)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            await self._set(dependency, False, f"no answer within {self._timeout_s:g}s")
        except Exception as exc:  # whatever the dependency failed with, it is not usable
            await self._set(dependency, False, getattr(exc, "message", None) or str(exc) or type(exc).__name__)
        else:
            await self._set(dependency, True, "")

    async def _set(self, dependency: Dependency, up: bool, detail: str) -> None:
        changed = dependency.up is not up
        dependency.up, dependency.detail = up, detail
        if not changed:
            return
        if up:
            log.info("dependency %s is up", dependency.name,
                     extra={"dependency": dependency.name, "target": dependency.target, "up": True})
        else:
            log.warning("dependency %s is unreachable: %s", dependency.name, detail,
                        extra={"dependency": dependency.name, "target": dependency.target, "up": False})
        if self._on_change is not None:
            await self._on_change(dependency)

    async def run(self, interval_s: float = PROBE_INTERVAL_S, *,
                  after_each: Callable[[], object] | None = None) -> None:
        """Probe every `interval_s` until cancelled; `after_each()` runs after each round."""
        while True:
            try:
                await self.probe_once()
                if after_each is not None:
                    after_each()
            except Exception:
                log.exception("dependency probe round failed")
            await asyncio.sleep(interval_s)


class EmbedderGate:
    """A TextEmbedder that fails fast while the embedder dependency is down (see the module doc)."""

    def __init__(self, inner: TextEmbedder, dependency: Dependency) -> None:
        self.inner = inner
        self.dependency = dependency

    def _check(self) -> None:
        dependency = self.dependency
        if dependency.up is False:
            raise Unavailable(f"the embedder at {dependency.target} is unreachable ({dependency.detail}); "
                              "text queries and text writes fail until it answers again, vector searches "
                              "still work")

    async def embed(self, texts: Sequence[str], *, model: str, field: str, deadline: float | None,
                    fields: Sequence[str] | None = None) -> np.ndarray:
        self._check()
        return await self.inner.embed(texts, model=model, field=field, deadline=deadline, fields=fields)

    async def chunk(self, texts: Sequence[str], *, model: str, options: ChunkingOptions, fields: Sequence[str],
                    options_field: str, deadline: float | None) -> list[ChunkedText]:
        self._check()
        return await self.inner.chunk(texts, model=model, options=options, fields=fields,
                                      options_field=options_field, deadline=deadline)

    async def default_model(self) -> str:
        self._check()
        return await self.inner.default_model()

    async def dimension_of(self, model: str) -> int:
        self._check()
        return await self.inner.dimension_of(model)

    def __getattr__(self, name: str) -> Any:  # the wrapped embedder's other attributes (e.g. its client)
        return getattr(self.inner, name)
