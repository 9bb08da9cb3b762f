"""Retrieval quality of dense, sparse (BM25) and hybrid search, through the gateway with the real model.

The corpus is generated (bench/_hybrid_corpus.py): 500 products of 20 kinds, each with a unique code like
"XK-4471". Rare-token queries ask for one product by its code; paraphrase queries describe a kind in
words none of its products use. The gateway embeds with the real ONNX model (all-MiniLM-L6-v2) and
searches the real engine (qdrant-edge): nothing here is simulated.

What it shows (recall@10, printed as a table; docs/search.md has the numbers): BM25 finds codes the
embedding cannot tell apart, the embedding finds meaning BM25 has no word for, and hybrid (RRF) is at
least as good as the better of the two on the mixed set.
"""

from __future__ import annotations

from bench._hybrid_corpus import Query, paraphrase_queries, products, rare_token_queries, recall_at
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import search_service_pb2 as search_pb

DBSF = search_pb.Fusion(method=search_pb.FUSION_METHOD_DBSF)
#: name → (mode, fusion); "hybrid" is the default fusion (RRF, k = 60)
MODES = {"dense": (search_pb.SEARCH_MODE_DENSE, None), "sparse": (search_pb.SEARCH_MODE_SPARSE, None),
         "hybrid": (search_pb.SEARCH_MODE_HYBRID, None), "hybrid-dbsf": (search_pb.SEARCH_MODE_HYBRID, DBSF)}
K = 10


async def recall(client, queries: list[Query], mode: int, fusion: search_pb.Fusion | None) -> float:
    total = 0.0
    for query in queries:
        response = await client.search("catalogue", text=query.text, mode=mode, fusion=fusion, limit=K)
        total += recall_at(K, [point.id.num for point in response.points], query.relevant)
    return total / len(queries)


async def test_hybrid_is_as_good_as_the_better_of_dense_and_bm25_on_mixed_queries(rig, capsys):
    server, client = await rig.start()
    catalogue = products()
    # avg_len: the products are ~15 tokens long (BM25's length normalisation compares with it)
    await client.create_collection("catalogue", bm25=coll_pb.Bm25Config(avg_len=15))
    for start in range(0, len(catalogue), 64):
        await client.upsert("catalogue", [{"id": p.id, "text": p.text} for p in catalogue[start:start + 64]])
    sets = {"rare tokens": rare_token_queries(catalogue), "paraphrases": paraphrase_queries(catalogue)}
    sets["mixed"] = sets["rare tokens"] + sets["paraphrases"]
    table = {name: {mode: await recall(client, queries, *how) for mode, how in MODES.items()}
             for name, queries in sets.items()}

    with capsys.disabled():
        print(f"\nrecall@{K} ({len(catalogue)} products; {len(sets['rare tokens'])} rare-token and "
              f"{len(sets['paraphrases'])} paraphrase queries)")
        print(f"{'query set':<12}" + "".join(f"{mode:>12}" for mode in MODES))
        for name, row in table.items():
            print(f"{name:<12}" + "".join(f"{row[mode]:>12.3f}" for mode in MODES))

    rare, paraphrase, mixed = table["rare tokens"], table["paraphrases"], table["mixed"]
    assert rare["sparse"] >= 0.95 and rare["sparse"] >= rare["dense"] + 0.3  # codes: BM25 ≫ the embedding
    assert paraphrase["dense"] >= paraphrase["sparse"] + 0.3  # meaning: the embedding ≫ BM25
    assert mixed["hybrid"] >= max(mixed["dense"], mixed["sparse"])  # RRF, the default fusion
