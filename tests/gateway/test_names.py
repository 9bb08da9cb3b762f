"""One name rule (searchgw.gateway.rules): any collection that can be created can be rolled out, and a
name that cannot be created is refused by a rollout with INVALID_ARGUMENT naming the rollout's field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from searchgw.errors import InvalidArgument, SearchgwError
from searchgw.gateway.backends import CollectionSpec
from searchgw.gateway.client import stage
from searchgw.gateway.rollout import Rollout, validate_new_rollout
from searchgw.gateway.rules import MAX_NAME_LENGTH, check_name, normalized_spec
from tests.fuzz import strategies as fz

VECTOR = [1.0, 0.0, 0.5, -1.0]

#: Names near every edge of the rule: leading '_', '-', '.', digits; separators; lengths 255 and 256.
names = st.one_of(
    st.from_regex(r"[A-Za-z0-9._/ -]{1,12}", fullmatch=True),
    st.text(max_size=8),
    st.sampled_from(["_docs", "-docs", ".docs", "docs.", "9", "_", "-", ".", "..", "a/b", "a b", "n" * MAX_NAME_LENGTH,
                     "n" * (MAX_NAME_LENGTH + 1), "", "é"]),
)


def creatable(name: str) -> bool:
    try:
        normalized_spec(CollectionSpec(name=name, dimension=4))
    except InvalidArgument as error:
        assert error.field == "collection.name"
        return False
    return True


def rollout_refusal(field: str, name: str) -> InvalidArgument | None:
    """What validating a rollout with `name` in `field` says (the other names are good ones)."""
    rollout = Rollout(name="r1", collection="docs", canary_collection="docs-v2")
    if field == "rollout.collection":
        rollout = dataclasses.replace(rollout, collection=name, canary_collection="c")
    elif field == "rollout.canary_collection":
        rollout = dataclasses.replace(rollout, canary_collection=name)
    else:
        rollout = dataclasses.replace(rollout, primary_collection=name, canary_collection="c")
    try:
        validate_new_rollout(rollout)
    except InvalidArgument as error:
        return error
    return None


@fz.fuzz_settings(300)
@pytest.mark.parametrize("field", ["rollout.collection", "rollout.canary_collection", "rollout.primary_collection"])
@given(name=names)
def test_a_name_can_be_rolled_out_exactly_when_it_can_be_created(field: str, name: str) -> None:
    if name in ("docs", "docs-v2", "c"):  # the other names of the rollout: equal names are refused apart
        return
    if field == "rollout.primary_collection" and not name:  # unset: the alias's target is the primary
        return
    refusal = rollout_refusal(field, name)
    if creatable(name):
        assert refusal is None, (name, refusal)
    else:
        assert refusal is not None and refusal.field == field, (name, refusal)


@pytest.mark.parametrize("name", ["_docs", "-docs", "9lives", "a.b_c-d", "n" * MAX_NAME_LENGTH])
def test_names_the_backends_always_took_are_creatable_and_can_be_rolled_out(name: str) -> None:
    assert check_name("collection", name) == name
    assert creatable(name)
    assert rollout_refusal("rollout.collection", name) is None


async def test_a_collection_named_with_a_leading_underscore_is_created_and_rolled_out(rig: Any) -> None:
    server, client = await rig.start()
    for name in ("_docs-v1", "_docs-v2"):
        await client.create_collection(name, dimension=4)
        await client.upsert(name, [{"id": 1, "vector": VECTOR}])
    await client.update_alias("_docs", "_docs-v1")
    rollout = await client.create_rollout("_r1", "_docs", "_docs-v2", stages=[stage(50, 3600, 0), stage(100)])
    assert (rollout.collection, rollout.primary_collection, rollout.canary_collection) == ("_docs", "_docs-v1",
                                                                                          "_docs-v2")


@pytest.mark.parametrize("name", [".docs", "a/b", "n" * (MAX_NAME_LENGTH + 1)])
async def test_a_name_that_cannot_be_created_is_refused_by_create_and_by_a_rollout_naming_the_field(
        rig: Any, name: str) -> None:
    server, client = await rig.start()
    await client.create_collection("docs-v1", dimension=4)
    await client.create_collection("docs-v2", dimension=4)
    await client.update_alias("docs", "docs-v1")
    with pytest.raises(SearchgwError) as created:
        await client.create_collection(name, dimension=4)
    assert (created.value.code_name, created.value.field) == ("INVALID_ARGUMENT", "collection.name")
    for args, field in (((name, "docs-v2"), "rollout.collection"), (("docs", name), "rollout.canary_collection")):
        with pytest.raises(SearchgwError) as refused:
            await client.create_rollout("r1", *args)
        assert (refused.value.code_name, refused.value.field) == ("INVALID_ARGUMENT", field)
