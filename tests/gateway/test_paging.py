"""Every listing pages the same way (AIP-158), through `PageTokens.paginate`.

First the helper on its own (pure: sizes, order, tokens bound to their listing and query), then each
listing - collections, aliases, snapshots, rollouts - through a real gateway and the typed client,
then the command line, which follows every page.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from searchgw.errors import InvalidArgument, SearchgwError
from searchgw.gateway.client import GatewayClient, every_page
from searchgw.gateway.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, PageTokens, page_size_of
from tests.rigs import GatewayRig

NAMES = [f"item-{i:02d}" for i in range(7)]


def paginate(tokens: PageTokens, items: list[str], page_size: int, page_token: str = "", *, listing: str = "things",
             query: tuple[object, ...] = ()) -> Page[str]:
    return tokens.paginate(items, key=lambda name: name, page_size=page_size, page_token=page_token, listing=listing,
                           query=query)


def walk(tokens: PageTokens, items: list[str], sizes: list[int]) -> list[list[str]]:
    """The pages of `items`, asking for sizes[i] on page i (the last size repeats)."""
    pages: list[list[str]] = []
    token = ""
    while True:
        page = paginate(tokens, items, sizes[min(len(pages), len(sizes) - 1)], token)
        pages.append(page.items)
        token = page.next_page_token
        if not token:
            return pages


# -- the helper ---------------------------------------------------------------------------------------

def test_pages_hold_every_item_once_in_key_order_and_the_last_has_no_token() -> None:
    tokens = PageTokens("k")
    shuffled = [NAMES[i] for i in (3, 0, 6, 1, 5, 2, 4)]
    assert walk(tokens, shuffled, [3]) == [NAMES[0:3], NAMES[3:6], NAMES[6:7]]
    assert paginate(tokens, NAMES, 7).next_page_token == ""
    assert paginate(tokens, [], 3) == Page([], "")


def test_page_size_may_change_from_one_page_to_the_next() -> None:
    assert walk(PageTokens("k"), NAMES, [2, 4, 1]) == [NAMES[0:2], NAMES[2:6], NAMES[6:7]]


def test_zero_means_the_default_size_and_above_the_maximum_is_clamped_to_it() -> None:
    assert (DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE) == (50, 1000)
    assert [page_size_of(0), page_size_of(7), page_size_of(MAX_PAGE_SIZE + 1), page_size_of(2**32 - 1)] == [
        DEFAULT_PAGE_SIZE, 7, MAX_PAGE_SIZE, MAX_PAGE_SIZE]
    items = [f"{i:05d}" for i in range(MAX_PAGE_SIZE + 1)]
    assert len(paginate(PageTokens("k"), items, 0).items) == DEFAULT_PAGE_SIZE
    first = paginate(PageTokens("k"), items, 10 * MAX_PAGE_SIZE)
    assert len(first.items) == MAX_PAGE_SIZE and first.next_page_token


def test_a_negative_page_size_is_refused_naming_page_size() -> None:
    with pytest.raises(InvalidArgument) as error:
        paginate(PageTokens("k"), NAMES, -1)
    assert error.value.field == "page_size"


def test_items_added_or_removed_between_pages_neither_repeat_nor_vanish() -> None:
    tokens = PageTokens("k")
    first = paginate(tokens, NAMES, 3)
    changed = [n for n in NAMES if n != "item-01"] + ["item-00a", "item-05a"]  # one gone, one before, one after
    second = paginate(tokens, changed, 3, first.next_page_token)
    assert first.items == NAMES[0:3] and second.items == ["item-03", "item-04", "item-05"]


@pytest.mark.parametrize("other", [
    dict(listing="other-things"),           # a token of another listing
    dict(query=("a-filter",)),              # the same listing with another filter
], ids=["foreign-listing", "changed-query"])
def test_a_token_used_with_another_listing_or_query_is_invalid_argument_naming_page_token(
        other: dict[str, Any]) -> None:
    tokens = PageTokens("k")
    token = paginate(tokens, NAMES, 2).next_page_token
    with pytest.raises(InvalidArgument, match="different query or listing") as error:
        paginate(tokens, NAMES, 2, token, **other)
    assert error.value.field == "page_token"


@pytest.mark.parametrize("tamper", [
    lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
    lambda token: token[::-1],
    lambda token: "not a token at all",
    lambda token: PageTokens("another key").issue_value("item-01", "whatever"),
], ids=["altered", "reversed", "garbage", "foreign-key"])
def test_a_tampered_or_forged_token_is_invalid_argument_naming_page_token(
        tamper: Callable[[str], str]) -> None:
    tokens = PageTokens("k")
    token = paginate(tokens, NAMES, 2).next_page_token
    with pytest.raises(InvalidArgument) as error:
        paginate(tokens, NAMES, 2, tamper(token))
    assert error.value.field == "page_token"


def test_tuple_keys_resume_where_they_stopped() -> None:
    tokens = PageTokens("k")
    rows = [(float(t), name) for t, name in ((2, "b"), (1, "z"), (2, "a"), (3, "c"), (1, "y"))]
    pages, token = [], ""
    while True:
        page = tokens.paginate(rows, key=lambda row: (-row[0], row[1]), page_size=2, page_token=token, listing="rows")
        pages.extend(page.items)
        if not (token := page.next_page_token):
            break
    assert pages == [(3.0, "c"), (2.0, "a"), (2.0, "b"), (1.0, "y"), (1.0, "z")]


# -- every listing, through a real gateway --------------------------------------------------------------

Fetch = Callable[[int, str], Awaitable[tuple[list[str], str]]]


async def pages_of(fetch: Fetch, page_size: int) -> list[list[str]]:
    pages, token = [], ""
    while True:
        names, token = await fetch(page_size, token)
        pages.append(names)
        if not token:
            return pages


async def expect_invalid(call: Awaitable[object]) -> InvalidArgument:
    with pytest.raises(SearchgwError) as info:
        await call
    assert isinstance(info.value, InvalidArgument) and info.value.code_name == "INVALID_ARGUMENT", info.value
    return info.value


def collections_of(client: GatewayClient) -> Fetch:
    async def fetch(size: int, token: str) -> tuple[list[str], str]:
        page = await client.list_collections(page_size=size, page_token=token)
        return [c.name for c in page.collections], page.next_page_token
    return fetch


def aliases_of(client: GatewayClient) -> Fetch:
    async def fetch(size: int, token: str) -> tuple[list[str], str]:
        page = await client.list_aliases_page(page_size=size, page_token=token)
        return [f"{a.alias}->{a.collection}" for a in page.aliases], page.next_page_token
    return fetch


def snapshots_of(client: GatewayClient, collection: str) -> Fetch:
    async def fetch(size: int, token: str) -> tuple[list[str], str]:
        page = await client.list_snapshots(collection, page_size=size, page_token=token)
        return [s.name for s in page.snapshots], page.next_page_token
    return fetch


def rollouts_of(client: GatewayClient, collection: str = "") -> Fetch:
    async def fetch(size: int, token: str) -> tuple[list[str], str]:
        page = await client.list_rollouts(collection=collection, page_size=size, page_token=token)
        return [r.name for r in page.rollouts], page.next_page_token
    return fetch


async def five_of_each(client: GatewayClient) -> dict[str, list[str]]:
    """Five collections, five aliases, five snapshots (of c-0), five ended rollouts (of alias a-0); each
    listing's names in the order it lists them."""
    collections = [f"c-{i}" for i in range(5)]
    for name in reversed(collections):  # created out of order: listed by name all the same
        await client.create_collection(name, dimension=4)
    for i in reversed(range(5)):
        await client.update_alias(f"a-{i}", f"c-{i}")
    snapshots = [(await client.create_snapshot("c-0")).name for _ in range(5)]
    rollouts: list[str] = []
    for i in range(5):
        name = f"r-{i}"
        await client.create_rollout(name, "a-0", "c-1")
        await client.abort_rollout(name)
        rollouts.insert(0, name)  # newest first
    return {"collections": collections, "aliases": [f"a-{i}->c-{i}" for i in range(5)], "snapshots": snapshots,
            "rollouts": rollouts}


LISTINGS: dict[str, Callable[[GatewayClient], Fetch]] = {
    "collections": collections_of,
    "aliases": aliases_of,
    "snapshots": lambda client: snapshots_of(client, "c-0"),
    "rollouts": rollouts_of,
}


async def test_every_listing_pages_through_every_item_once_in_order(rig: GatewayRig) -> None:
    server, client = await rig.start("edge")
    expected = await five_of_each(client)
    for listing, fetch_of in LISTINGS.items():
        pages = await pages_of(fetch_of(client), 2)
        assert pages == [expected[listing][0:2], expected[listing][2:4], expected[listing][4:5]], listing
        assert await pages_of(fetch_of(client), 0) == [expected[listing]], listing  # 0: the default, 50
        assert await pages_of(fetch_of(client), 2**32 - 1) == [expected[listing]], listing  # clamped, not refused
    assert await client.list_aliases(page_size=2) == {f"a-{i}": f"c-{i}" for i in range(5)}  # follows the pages


async def test_a_token_of_another_listing_or_another_filter_is_invalid_argument_naming_page_token(
        rig: GatewayRig) -> None:
    server, client = await rig.start("edge")
    await five_of_each(client)
    tokens = {}
    for listing, fetch_of in LISTINGS.items():
        _, tokens[listing] = await fetch_of(client)(2, "")
        assert tokens[listing], listing
    for listing, fetch_of in LISTINGS.items():
        for other, token in tokens.items():
            if other != listing:  # e.g. a collections token sent to ListSnapshots
                error = await expect_invalid(fetch_of(client)(2, token))
                assert error.field == "page_token", (listing, other)
    # The same listing with its filter changed: snapshots of another collection, rollouts of another alias.
    await client.create_snapshot("c-1")
    await client.create_snapshot("c-1")
    for fetch in (snapshots_of(client, "c-1"), rollouts_of(client, "a-1"), rollouts_of(client, "a-0")):
        for token in (tokens["snapshots"], tokens["rollouts"]):
            error = await expect_invalid(fetch(2, token))
            assert error.field == "page_token"
    # Altered: a token is opaque and signed.
    for listing, fetch_of in LISTINGS.items():
        token = tokens[listing]
        for bad in (token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "x" + token, "name-of-a-thing"):
            error = await expect_invalid(fetch_of(client)(2, bad))
            assert error.field == "page_token", listing


async def test_a_negative_page_size_is_invalid_argument_naming_page_size(rig: GatewayRig) -> None:
    server, client = await rig.start("edge")
    await client.create_collection("c-0", dimension=4)
    for listing, fetch_of in LISTINGS.items():  # refused by the client: the wire type is unsigned
        error = await expect_invalid(fetch_of(client)(-1, ""))
        assert error.field == "page_size", listing
    admin = server.admin
    for call in (server.controller.list(page_size=-1), admin.list(-1, ""), admin.aliases(-1),
                 admin.list_snapshots("c-0", -1)):
        with pytest.raises(InvalidArgument) as refused:  # and in-process by the domain code
            await call
        assert refused.value.field == "page_size"


# -- the command line ------------------------------------------------------------------------------------

async def test_collections_list_shows_every_collection_and_alias_past_one_page(rig: GatewayRig) -> None:
    server, client = await rig.start("edge")
    count = DEFAULT_PAGE_SIZE + 2
    for i in range(count):
        await client.create_collection(f"col-{i:03d}", dimension=4)
    for i in range(count):
        await client.update_alias(f"al-{i:03d}", f"col-{i:03d}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "searchgw.cli", "collections", "list", "--addr", server.address, "--output", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    listed = json.loads(stdout)
    assert [c["name"] for c in listed["collections"]] == [f"col-{i:03d}" for i in range(count)]
    assert listed["aliases"] == {f"al-{i:03d}": f"col-{i:03d}" for i in range(count)}


async def test_every_page_follows_next_page_token_to_the_end(rig: GatewayRig) -> None:
    server, client = await rig.start("edge")
    for i in range(5):
        await client.create_collection(f"c-{i}", dimension=4)
    sizes = [len(page.collections) async for page in every_page(
        lambda token: client.list_collections(page_size=2, page_token=token))]
    assert sizes == [2, 2, 1]
