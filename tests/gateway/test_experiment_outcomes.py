"""Search ids and the outcome ledger: unforgeable, bounded in time and in memory (pure, injected times)."""

from __future__ import annotations

import pytest

from searchgw.errors import InvalidArgument
from searchgw.gateway.experiments import OutcomeLedger, OutcomeStatus, SearchIds


def test_a_search_id_carries_experiment_arm_and_time_and_only_its_issuer_reads_it():
    ids = SearchIds(b"secret")
    token = ids.issue("exp-1", 2, 1_700_000_000.7)
    read = ids.read(token, "search_id")
    assert (read.experiment, read.arm_index, read.issued_s) == ("exp-1", 2, 1_700_000_000)
    assert len(token) < 64
    assert ids.issue("exp-1", 2, 1_700_000_000.7) != token  # a fresh nonce per search
    for bad in (token[:-1], token[:10], "x" + token[1:], "!!!", SearchIds(b"other").issue("exp-1", 2, 1.0)):
        with pytest.raises(InvalidArgument) as refused:
            ids.read(bad, "outcomes[3].search_id")
        assert refused.value.field == "outcomes[3].search_id"
    assert SearchIds(b"secret").read(token, "f") == read  # the same secret reads it after a restart


def test_the_ledger_counts_each_kind_once_expires_ids_and_refuses_rather_than_forget_early():
    ids = SearchIds(b"k")
    ledger = OutcomeLedger(ttl_s=60.0, max_entries=2)
    first, second, third = (ids.read(ids.issue("e", 0, 1000.0), "f") for _ in range(3))
    assert ledger.check(first, "click", 1001.0) is OutcomeStatus.ACCEPTED
    assert ledger.check(first, "click", 1002.0) is OutcomeStatus.DUPLICATE
    assert ledger.check(first, "buy", 1002.0) is OutcomeStatus.ACCEPTED
    assert ledger.check(second, "click", 1003.0) is OutcomeStatus.ACCEPTED
    assert ledger.check(third, "click", 1004.0) is OutcomeStatus.OVERLOADED  # full: no double counting
    assert ledger.check(first, "click", 1060.0) is OutcomeStatus.DUPLICATE  # still within its window
    assert ledger.check(first, "click", 1060.5) is OutcomeStatus.EXPIRED
    later = ids.read(ids.issue("e", 0, 1070.0), "f")
    assert ledger.check(later, "click", 1070.0) is OutcomeStatus.ACCEPTED  # the expired ids were forgotten
    assert len(ledger) == 1
