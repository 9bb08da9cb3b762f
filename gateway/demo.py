"""The demo collection the single-machine command builds: `docs`, an alias of `docs-v1`.

Fifty-odd short passages about search and progressive delivery, embedded by the running embedder, so
`searchgw search "..."` answers at once on a fresh machine with nothing downloaded.

`DemoSeeder` takes what it uses explicitly: the (instrumented) backend, the embedder, and the
SearchCore whose writes embed and check the passages.
"""

from __future__ import annotations

import logging

from searchgw.gateway.backends import CollectionSpec, Distance, VectorBackend
from searchgw.gateway.core import PointInput, SearchCore
from searchgw.gateway.embedding import TextEmbedder
from searchgw.errors import NotFound

log = logging.getLogger(__name__)

DEMO_ALIAS = "docs"
DEMO_COLLECTION = "docs-v1"

PASSAGES = [
    ("rollouts", "A canary rollout sends a small share of traffic to the new collection and compares it with primary."),
    ("rollouts", "Stages raise the canary weight step by step: five percent, then twenty-five, fifty and one hundred."),
    ("rollouts", "An automatic rollback sends all traffic back to primary when the canary fails its checks."),
    ("rollouts", "Promotion points the logical collection name at the canary with one atomic alias switch."),
    ("rollouts", "Pausing a rollout freezes the canary weight and the stage clock until it is resumed."),
    ("rollouts", "Aborting a rollout is a manual rollback; the controller never undoes it on its next tick."),
    ("rollouts", "A check is inconclusive when either arm has too few requests; the stage simply holds."),
    ("rollouts", "Every decision is stored with its reason and the numbers of both arms behind it."),
    ("rollouts", "Failed checks in a row trigger a rollback; so does reaching the total failure limit."),
    ("rollouts", "A stage passes after its minimum duration and minimum canary requests with no failing check."),
    ("routing", "The routing key is hashed with a per-rollout salt into one of ten thousand buckets."),
    ("routing", "A user whose bucket is below the canary weight is on the canary, at every later stage too."),
    ("routing", "Each rollout gets a new salt, so different users carry each canary."),
    ("routing", "Requests without a routing key fall back to the peer address or to a random key, and are counted."),
    ("routing", "The x-canary-arm header forces an arm for smoke tests; such requests stay out of the analysis."),
    ("routing", "A service mesh keeps a user on one host within a subset, but not on one version across a split."),
    ("analysis", "Both arms are measured over the same sliding window: requests by status code and latency."),
    ("analysis", "The canary fails a check when its error rate exceeds an absolute limit or primary's by a margin."),
    ("analysis", "Latency is compared at the ninety-fifth percentile, with a ratio and a small absolute slack."),
    ("analysis", "Missing data never counts as a failure, and no numbers are ever invented for an idle arm."),
    ("analysis", "Invalid arguments and not-found errors are the client's mistakes and do not count as errors."),
    ("reliability", "When the canary fails with a retryable error, primary answers within the remaining deadline."),
    ("reliability", "Writes during a rollout go to both collections so the canary never falls behind."),
    ("reliability", "On SIGTERM the server reports not serving, finishes in-flight calls and exits cleanly."),
    ("reliability", "Rollout state survives restarts: a restarted gateway resumes at the same stage and weight."),
    ("reliability", "A full queue answers resource exhausted at once instead of letting latency grow without bound."),
    ("reliability", "Deadlines travel from the client through the gateway to the embedder and the vector backend."),
    ("embeddings", "Sentence embeddings map a text to a vector so that similar meanings lie close together."),
    ("embeddings", "The embedding server batches concurrent requests into one model run without a timer."),
    ("embeddings", "Inputs longer than the model's limit are truncated by default, or rejected when asked."),
    ("embeddings", "Mean pooling averages the token vectors; normalisation scales the result to unit length."),
    ("embeddings", "A cache answers repeated texts without running the model again."),
    ("embeddings", "The model runs in ONNX Runtime on the CPU; no weights are downloaded at run time."),
    ("embeddings", "Padding to the longest input in a batch wastes less work than padding to a fixed length."),
    ("vector search", "HNSW is a graph index that finds approximate nearest neighbours in logarithmic time."),
    ("vector search", "Cosine similarity compares the angle between two vectors and ignores their length."),
    ("vector search", "Payload filters restrict a search to points whose fields match given values or ranges."),
    ("vector search", "A score threshold drops hits that are less similar than a given value."),
    ("vector search", "An alias is a stable name for a collection; switching it is atomic for readers."),
    ("vector search", "Scalar quantisation stores vectors as bytes to search faster with little loss of recall."),
    ("vector search", "The embedded engine keeps a write-ahead log, so acknowledged points survive a crash."),
    ("operations", "Prometheus scrapes request counts by arm and status code from the metrics port."),
    ("operations", "Alerts fire when the canary error rate rises above primary or a rollback happens."),
    ("operations", "Traces follow a search from the gateway into the embedding server."),
    ("operations", "Logs are JSON lines that carry the trace id, and decisions carry their numbers."),
    ("operations", "The load generator measures latency from the scheduled send time to avoid coordinated omission."),
    ("cooking", "Simmer the tomatoes with garlic and olive oil for twenty minutes before adding basil."),
    ("cooking", "Knead the dough until it is smooth and elastic, then let it rise for an hour."),
    ("travel", "The night train from Vienna reaches Venice early in the morning."),
    ("travel", "Pack light layers for mountain hikes: weather above the tree line changes quickly."),
    ("sports", "The marathon course follows the river before climbing to the old town."),
    ("music", "A string quartet has two violins, a viola and a cello."),
]


class DemoSeeder:
    """Builds the demo collection on a fresh gateway."""

    def __init__(self, backend: VectorBackend, embedder: TextEmbedder | None, search: SearchCore) -> None:
        self._backend = backend
        self._embedder = embedder
        self._search = search

    async def ensure(self) -> bool:
        """Create and fill `docs-v1` and point `docs` at it, unless `docs` exists. True when it built it."""
        try:
            await self._backend.resolve(DEMO_ALIAS)
            return False
        except NotFound:
            pass
        if self._embedder is None:
            log.warning("no embedder: the demo collection is not built")
            return False
        model = await self._embedder.default_model()
        dimension = await self._embedder.dimension_of(model)
        await self._backend.create_collection(CollectionSpec(name=DEMO_COLLECTION, dimension=dimension,
                                                             distance=Distance.COSINE, embedding_model=model))
        points = [PointInput(id=i + 1, text=text, payload={"topic": topic, "text": text})
                  for i, (topic, text) in enumerate(PASSAGES)]
        await self._search.upsert(DEMO_COLLECTION, points)
        await self._backend.update_alias(DEMO_ALIAS, DEMO_COLLECTION)
        log.info("demo collection built", extra={"alias": DEMO_ALIAS, "collection": DEMO_COLLECTION,
                                                 "points": len(points), "model": model})
        return True
