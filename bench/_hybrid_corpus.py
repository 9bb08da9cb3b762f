"""A product-catalogue corpus for hybrid search, generated deterministically (no download).

Twenty product kinds, each written with its own words ("electric kettle … boils water quickly"); each
product has a brand and a unique code like "XK-4471". Two query sets with known answers:

- rare-token queries: a product's code, alone or in a short question ("where can I buy XK-4471?").
  Exactly one product is relevant. Exact tokens are what BM25 is for; an embedding of "XK-4471" says
  little about which of six near-identical kettles it is.
- paraphrase queries: a kind described in other words ("appliance to heat liquid for tea in a hurry"),
  sharing no stemmed word with that kind's products. Its products are relevant. Meaning is what the
  embedding is for; BM25 has no word to match.

The mixed set is both. tests/gateway/test_hybrid_quality.py measures recall@10 for dense, sparse and
hybrid on each; bench/bench_hybrid.py builds a 20k-point collection from the same products.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

#: (product noun, three descriptions in the products' words, a paraphrase query in other words)
KINDS: tuple[tuple[str, tuple[str, str, str], str], ...] = (
    ("electric kettle", ("boils water quickly", "stainless steel body with automatic shut-off",
                         "holds 1.7 litres of water"),
     "appliance to heat liquid for tea in a hurry"),
    ("noise cancelling headphones", ("block engine noise on flights", "wireless over-ear sound with long battery life",
                                     "comfortable ear cushions for music"),
     "gear that silences the world around you while you listen on a plane"),
    ("ergonomic office chair", ("lumbar support for your back", "adjustable armrests and seat height",
                                "mesh backrest keeps you cool"),
     "somewhere to sit that prevents spine ache during long workdays at a desk"),
    ("waterproof hiking boots", ("grip on rocky trails", "ankle support on mountain paths", "keep feet dry in rain"),
     "footwear for trekking over stony terrain without getting soaked"),
    ("espresso machine", ("brews coffee with a milk frother", "15 bar pump for rich crema",
                          "makes cappuccino and latte at home"),
     "device for preparing strong barista-style drinks in the kitchen"),
    ("smart thermostat", ("learns your heating schedule", "saves energy when nobody is home",
                          "control the temperature from your phone"),
     "gadget that adjusts how warm the house is automatically and cuts utility bills"),
    ("portable charger", ("charges phones and tablets on the go", "20000 mAh battery pack", "fast charging over USB-C"),
     "pocket-sized energy reserve to top up a mobile when away from an outlet"),
    ("robot vacuum cleaner", ("cleans floors on its own", "maps every room and avoids stairs",
                              "picks up pet hair and dust"),
     "automatic device that tidies carpets while I am out"),
    ("high-speed blender", ("crushes ice for smoothies", "powerful motor purees soups",
                            "blends frozen fruit in seconds"),
     "appliance to liquidise berries and veg into a shake"),
    ("four-person camping tent", ("sets up in minutes", "rainfly keeps you dry", "room for a family"),
     "shelter to sleep outdoors with the kids under canvas"),
    ("electric toothbrush", ("removes plaque better than a manual brush",
                             "two-minute timer for dentist-recommended cleaning", "whitening mode for your teeth"),
     "battery-powered oral hygiene tool for healthier gums"),
    ("lightweight running shoes", ("cushioned sole for long runs", "breathable mesh upper", "for marathon training"),
     "trainers for jogging that are easy on the knees"),
    ("HEPA air purifier", ("removes pollen and smoke from the room", "quiet night mode", "filter catches fine dust"),
     "machine that freshens what you breathe indoors for allergy sufferers"),
    ("dash cam", ("records the road while you drive", "night vision and loop recording",
                  "evidence after a car accident"),
     "camera on the vehicle windscreen to film traffic incidents"),
    ("non-slip yoga mat", ("thick cushioning for joints", "grippy surface for poses", "easy to roll up and carry"),
     "padded floor layer for stretching and pilates"),
    ("video baby monitor", ("watch your infant sleep from another room", "two-way talk and lullabies",
                            "alerts when the nursery gets too warm"),
     "screen to keep an eye on a newborn in the cot"),
    ("e-reader", ("glare-free screen like paper", "holds thousands of books", "battery lasts weeks"),
     "gadget for novels you can enjoy in sunshine"),
    ("sewing machine", ("stitches fabric with 60 patterns", "automatic needle threader", "for quilting and dressmaking"),
     "equipment to make and mend clothes yourself"),
    ("cordless drill", ("drives screws and bores holes", "two lithium batteries included", "for DIY and woodwork"),
     "power tool to put up shelves without a cable"),
    ("cycling helmet", ("protects your head in a crash", "vents keep you cool on climbs",
                        "adjustable fit with a rear dial"),
     "safety gear for riding a bicycle to work"),
)
BRANDS = ("Acme", "Norden", "Velox", "Kestrel", "Brightline", "Orbis", "Tamarind", "Quillon", "Harbor", "Zephyr")
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass(frozen=True)
class Product:
    id: int
    kind: int
    code: str
    text: str


@dataclass(frozen=True)
class Query:
    text: str
    relevant: frozenset[int]
    kind: str  # "rare" or "paraphrase"


def products(per_kind: int = 25, seed: int = 4471) -> list[Product]:
    """`per_kind` products of every kind, ids 0.. in kind order, each with a unique code."""
    rng = random.Random(seed)
    numbers = rng.sample(range(1000, 10_000), per_kind * len(KINDS))
    out = []
    for kind, (noun, descriptions, _) in enumerate(KINDS):
        for j in range(per_kind):
            index = kind * per_kind + j
            code = f"{rng.choice(LETTERS)}{rng.choice(LETTERS)}-{numbers[index]}"
            first, second = rng.sample(descriptions, 2)
            brand = BRANDS[rng.randrange(len(BRANDS))]
            out.append(Product(index, kind, code, f"{brand} {code} {noun}: {first}, {second}."))
    return out


def rare_token_queries(catalogue: list[Product], count: int = 40, seed: int = 7) -> list[Query]:
    rng = random.Random(seed)
    chosen = rng.sample(catalogue, count)
    forms = ("{code}", "where can I buy {code}?", "{code} spare parts", "manual for the {code}")
    return [Query(forms[i % len(forms)].format(code=p.code), frozenset({p.id}), "rare") for i, p in enumerate(chosen)]


def paraphrase_queries(catalogue: list[Product]) -> list[Query]:
    return [Query(paraphrase, frozenset(p.id for p in catalogue if p.kind == kind), "paraphrase")
            for kind, (_, _, paraphrase) in enumerate(KINDS)]


def recall_at(k: int, hits: list[int], relevant: frozenset[int]) -> float:
    """The share of the relevant points in the first `k` hits, out of as many as `k` hits can hold
    (a kind's 25 products: 10 in the first 10 hits is 1.0)."""
    return len(set(hits[:k]) & relevant) / min(k, len(relevant))


def many_products(count: int, seed: int = 20_000) -> Iterator[Product]:
    """`count` products for a bench (ids 0..count-1), the kinds in turn, codes unique."""
    rng = random.Random(seed)
    numbers = rng.sample(range(100_000, 1_000_000), count)
    for index in range(count):
        kind = index % len(KINDS)
        noun, descriptions, _ = KINDS[kind]
        first, second = rng.sample(descriptions, 2)
        code = f"{rng.choice(LETTERS)}{rng.choice(LETTERS)}-{numbers[index]}"
        yield Product(index, kind, code, f"{BRANDS[rng.randrange(len(BRANDS))]} {code} {noun}: {first}, {second}.")
