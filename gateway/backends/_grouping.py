"""Grouped search for an engine without a group-by (qdrant-edge 0.9 has none): over-fetch and collapse.

`grouped_search` runs the query ungrouped for `limit × group_size × 4` hits (at least 32), with
payloads, and collapses them by the `group_by` value (`collapse`): groups in the order of their best
hit, each of up to `group_size` hits, best first, as Qdrant's own group-by orders them. While fewer
than `limit` groups are full and the engine returned all it was asked for, it asks again for four
times as many, up to `GROUP_FETCH_LIMIT` hits: the documented bound. Once `limit` groups are full no
later hit can change them (it scores below every hit kept), so below the bound the answer is Qdrant's;
at the bound a search whose best `limit` groups need more hits than that (a few documents with very
many well-matching chunks) returns fewer groups, or fewer hits in a group, than exist.

A point is in the group of each value its `group_by` key holds (a string or an integer, or an array of
them, as in Qdrant); a point without such a value is in no group. The key is a dotted path of field
names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from searchgw.gateway.backends.types import ScoredPoint, SearchQuery

#: The most hits one grouped search fetches from an engine without a group-by.
GROUP_FETCH_LIMIT = 4096
#: Over-fetch factor of each round.
_FACTOR = 4


def group_values(payload: Mapping[str, Any] | None, key: str) -> list[str | int]:
    """The group values `key` (a dotted path) holds in `payload`: strings and integers (not booleans)."""
    value: Any = payload
    for name in key.split("."):
        if not isinstance(value, Mapping) or name not in value:
            return []
        value = value[name]
    values = value if isinstance(value, list) else [value]
    found: list[str | int] = []
    for item in values:
        if isinstance(item, (str, int)) and not isinstance(item, bool) and item not in found:
            found.append(item)
    return found


def collapse(hits: Sequence[ScoredPoint], key: str, limit: int, group_size: int,
             with_payload: bool) -> tuple[list[ScoredPoint], bool]:
    """`hits` (best first, with payloads) as up to `limit` groups of up to `group_size` hits, flattened
    group by group with `group_id` set; and whether `limit` groups are full."""
    groups: dict[str | int, list[ScoredPoint]] = {}
    for hit in hits:
        for value in group_values(hit.payload, key):
            members = groups.get(value)
            if members is None:
                if len(groups) == limit:
                    continue
                members = groups[value] = []
            if len(members) < group_size:
                members.append(replace(hit, payload=hit.payload if with_payload else None, group_id=value))
    full = len(groups) == limit and all(len(members) == group_size for members in groups.values())
    return [hit for members in groups.values() for hit in members], full


async def grouped_search(run: Callable[[SearchQuery], Awaitable[list[ScoredPoint]]],
                         query: SearchQuery) -> list[ScoredPoint]:
    """The grouped answer to `query` (its `group_by` set) from ungrouped runs of it (see the module doc)."""
    assert query.group_by is not None
    fetch = min(max(query.limit * query.group_size * _FACTOR, 32), GROUP_FETCH_LIMIT)
    while True:
        hits = await run(replace(query, limit=fetch, offset=0, with_payload=True, group_by=None, group_size=1))
        grouped, full = collapse(hits, query.group_by, query.limit, query.group_size, query.with_payload)
        if full or len(hits) < fetch or fetch >= GROUP_FETCH_LIMIT:
            return grouped
        fetch = min(fetch * _FACTOR, GROUP_FETCH_LIMIT)


__all__ = ["GROUP_FETCH_LIMIT", "collapse", "group_values", "grouped_search"]
