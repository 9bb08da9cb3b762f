"""A Qdrant-protocol gRPC test server over the real engine (qdrant-edge), for the `qdrant` backend's tests.

It is a test double, not a Qdrant replacement: it serves the subset of Qdrant's gRPC API that
searchgw's `QdrantBackend` calls (see README.md), stores points in qdrant-edge shards and its
collections and aliases in a catalog file, and answers everything else UNIMPLEMENTED.

- In-process: `server = QdrantTestServer(data_dir); port = await server.start()`; `server.url` is
  the location `QdrantBackend` takes; `server.faults` holds calls (a stalled server); `server.calls` logs them.
- As a process: `python -m tests.qdrant_server --port 0 --data-dir D` prints
  `qdrant test server on 127.0.0.1:PORT`; `QdrantServerProcess` starts, SIGKILLs and restarts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.qdrant_server._process import QdrantServerProcess
    from tests.qdrant_server._server import Faults, QdrantTestServer

__all__ = ["Faults", "QdrantServerProcess", "QdrantTestServer"]


def __getattr__(name: str) -> Any:
    """The server loads when first named, so `python -m tests.qdrant_server` can choose how (see __main__)."""
    if name == "QdrantServerProcess":
        from tests.qdrant_server._process import QdrantServerProcess

        return QdrantServerProcess
    if name in ("Faults", "QdrantTestServer"):
        from tests.qdrant_server import _server

        return getattr(_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
