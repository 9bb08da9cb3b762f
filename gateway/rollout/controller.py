"""RolloutController: moves a logical collection's traffic to a canary stage by stage, on evidence.

Life of a rollout
    RUNNING ──pause──► PAUSED ──resume──► RUNNING                 same stage, same stage clock
    RUNNING ──last stage passes──► BAKING (or PROMOTED)           with auto_promote
    RUNNING ──last stage passes──► AWAITING_PROMOTION             without it
    RUNNING | PAUSED | AWAITING_PROMOTION ──promote──► BAKING     one alias switch; early promotion allowed
                                         (PROMOTED at once when the policy's bake_duration is 0)
    RUNNING | PAUSED | AWAITING_PROMOTION ──abort──► ABORTED      weight 0, alias untouched
    RUNNING | PAUSED | AWAITING_PROMOTION ──checks fail──► ROLLED_BACK   weight 0, alias untouched
    BAKING ──bake_duration passes (or promote)──► PROMOTED        BAKE_COMPLETED; writes stop reaching the old
    BAKING ──undo, or a check fails──► UNDONE                     alias switched back; no write lost
    PROMOTED ──grace_period passes──► (PROMOTED)                  OLD_COLLECTION_DELETED or _KEPT, per policy
Any other move is FailedPrecondition, with the state in the message (undo after the bake says why).

After promotion (`PromotionPolicy`)
    BAKING: the alias points at the canary, and the route table stays published at 100 % with the
    old collection as the other arm, so every write still reaches both collections and every search
    is served (and analysed) by the new one. The stage's tests restart at 100 %: the new collection
    is judged against the old one's baseline (ERROR_BASELINE, LATENCY_BASELINE and the guard). A
    rejected test undoes the promotion at that check (CHECK_FAILED, UNDONE with the numbers). The
    bake clock runs like a stage clock (`stage_elapsed`, monotonic, downtime excluded, saved with
    every decision); `bake_start_time` is when the alias switched. UndoRollout switches the alias
    back first, then ends the rollout: the old collection received every acknowledged write of the
    bake. After the bake (PROMOTED) writes reach the new collection only, so an undo would lose them
    and is refused. The grace period counts in wall-clock time from `bake_end_time` (downtime
    included: the old collection just waits); its action is taken on a tick, recorded as a decision,
    and never deletes a collection an alias points at or an active rollout uses (then it is kept,
    and the decision says why).

Before traffic (docs/canary.md; the methods are in the "preparation" section)
    prepare ──► PREPARING ──backfill done──► PREPARED ──start_traffic (passed pre-flight)──► RUNNING
    create with a preflight_policy ──► PREPARED;   validate (PREPARED) records a pre-flight
    PREPARING and PREPARED hold the collection and take dual writes at weight 0; they run no checks
    and cannot be promoted; abort ends them. The backfill is a task of the controller (`Backfill`),
    its progress saved with the rollout after every page; `start()` resumes it, `stop()` cancels it.
    With several replicas only the leader copies: a follower's task ends at its next page, and the
    leader's tick starts the backfill of a PREPARING rollout it adopted or came to lead.

Checks
    Analysed calls are counted per second and per arm (`record`, O(1)). Every `interval` the
    complete seconds are folded into the stage's sequential tests and judged (see `analysis`).
    Checks run in every active state — while PAUSED and AWAITING_PROMOTION too, since the canary
    still serves users — and are recorded as decisions. A rejected test is final: the rollout is
    rolled back at that check, in any active state (the tests stay valid however often they are
    read, so there is no need to wait for "N failures in a row"). A split that does not match the
    weight pauses a RUNNING rollout for a person to look at; resuming restarts the split test.
    Only a RUNNING rollout advances.
    Shadow comparisons (`record_comparison`, from SearchCore's sampled searches; see `quality`) are
    counted per second in the canary's slice like calls, and judged by the quality guard with the rest.

Stage passing
    A stage passes at a passed check when it has lasted `min_duration` and has seen `min_requests`
    analysed canary requests (and the analysis its `min_requests_per_arm` on each compared arm).
    Stage time counts only while RUNNING: pauses, and time the gateway was down, are excluded.
    Canary requests count only while RUNNING, too. Each stage starts its tests afresh; primary's
    calls of the stages before are the baseline a canary at 100 % weight is compared with. After
    the last stage, `auto_promote` promotes; otherwise the rollout awaits PromoteRollout with
    traffic at the last weight.

Transitions
    Each is serialised per rollout by an asyncio.Lock; the state is re-read under the lock, so the
    controller never undoes an operator's action (a tick that waited for the lock finds the rollout
    paused or aborted and leaves it so). A transition runs to its end even when its caller is
    cancelled (a deadline), so a promotion cannot stop between its alias switch and its save.
    A move that keeps the rollout active (start, pause, resume, advance) is saved first (the
    store's transaction), then made current and published to the router, then announced: log line
    (logger `searchgw.gateway.rollout`, numbers in `extra`), observer, watchers; if saving fails the
    rollout is unchanged. A move that ends it (promote, abort, roll back) takes effect in routing
    first, whatever the store does, and is saved after — on every tick until the store takes it.
    Promotion is one alias switch; if the switch fails the rollout is unchanged and the error
    propagates (Unavailable unless the backend raised a domain error). A rollout needs an alias:
    starting one on a physical collection name is FailedPrecondition. A promotion into BAKING and an
    undo take effect like ending moves (the alias has switched: the move has happened), saved with
    retry; so do the grace period's decisions.

History
    Every decision is kept except routine ones (CHECK_PASSED, INCONCLUSIVE): a run of the same
    routine decision is folded into one entry (its count, first and last time, the newest numbers;
    every check is logged with its numbers), and only the newest `max_routine_decisions` such
    entries per rollout are kept, so a rollout that waits days for promotion keeps a bounded history.

Restart
    `start()` loads every rollout; active ones resume in their state, stage and weight with the
    stage time, canary count and the stage's test evidence saved with their last decision (saved
    again on `stop()`). Calls of the seconds since that save are lost to the analysis, and the split
    test starts over. An active rollout whose alias already points at its canary (a promotion whose
    save did not happen) is finished (into BAKING when the policy bakes); a BAKING one whose alias
    points back at its old collection (an undo whose save did not happen) is recorded as UNDONE.

Several replicas (a shared store, see `cluster` and `redis_store`)
    With a `Leadership` and a `CountsExchange`, only the leader checks: a follower's tick hands its
    complete seconds to the exchange, and the leader's check gathers everyone's before folding them.
    Every replica applies what another one saved with `adopt` (routes, watchers, gauges). A manual
    action at any replica is the same transition as on one replica, saved with compare-and-set
    against the version it was made on; the leader and the others adopt it. An end (abort, rollback)
    the store cannot take yet stays in routing here; if another replica saved the rollout meanwhile,
    a person's end is re-applied on top of the newer state (`adopt`), a controller's end is dropped
    for the new leader to judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from searchgw.gateway.backends import CollectionSpec
from searchgw.gateway.paging import Page, PageTokens
from searchgw.gateway.rollout.analysis import (
    ArmSlice,
    CheckOutcome,
    RecentLatency,
    StageEvidence,
    Verdict,
    judge,
    latency_threshold,
)
from searchgw.gateway.rollout.backfill import Backfill, needs_reembedding
from searchgw.gateway.rollout.cluster import CountsExchange, Leadership, LocalCounts, SoleLeadership
from searchgw.gateway.rollout.model import (
    ACTIVE_STATES,
    CONTROLLER_ACTOR,
    PREPARATION_STATES,
    OldCollectionAction,
    ROUTINE_DECISIONS,
    Decision,
    VectorSpace,
    check_arm_bm25,
    check_arm_spaces,
    DecisionKind,
    Rollout,
    RolloutState,
    TestKind,
    check_reason,
    validate_new_rollout,
)
from searchgw.gateway.rollout.preflight import PreflightRunner
from searchgw.gateway.rollout.quality import QualityPolicy
from searchgw.gateway.rollout.preparation import (
    DEFAULT_BACKFILL_BATCH,
    MAX_BACKFILL_BATCH,
    MAX_PREFLIGHT_SAMPLE,
    BackfillProgress,
    CanaryOverrides,
    PreflightPolicy,
)
from searchgw.gateway.rollout.store import RolloutStore
from searchgw.gateway.routing import Arm, Router, RouteTable
from searchgw.gateway.routing.writes import WriteOrder
from searchgw.gateway.rules import aliases_of
from searchgw.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SearchgwError,
    Unavailable,
)

log = logging.getLogger("searchgw.gateway.rollout")

SwitchAlias = Callable[[str, str], Awaitable[object]]  # its result (the previous target) is ignored
ResolveAlias = Callable[[str], Awaitable[str]]
DeleteCollection = Callable[[str], Awaitable[object]]
ListAliases = Callable[[], Awaitable[Mapping[str, str]]]
DescribeSpace = Callable[[str], Awaitable[VectorSpace]]
#: Whether a physical collection has a BM25 index (sparse and hybrid searches).
HasBm25 = Callable[[str], Awaitable[bool]]
Sleep = Callable[[float], Awaitable[None]]

#: The actor of a manual action whose caller named nobody.
ANONYMOUS_ACTOR = "anonymous"
DEFAULT_MAX_ROUTINE_DECISIONS = 100
#: How long a backfill waits after a failure before it tries the page again.
BACKFILL_RETRY_S = 10.0

ResultT = TypeVar("ResultT")

_RUNNING = RolloutState.RUNNING
_PAUSED = RolloutState.PAUSED
_AWAITING = RolloutState.AWAITING_PROMOTION
_PREPARING = RolloutState.PREPARING
_PREPARED = RolloutState.PREPARED
_BAKING = RolloutState.BAKING
#: Where abort starts from: every active state but BAKING (its alias already points at the canary:
#: undo it, or promote it to end the bake).
_BEFORE_PROMOTION = ACTIVE_STATES - {_BAKING}
#: States whose stage clock runs (in BAKING it is the bake's clock).
_CLOCKED = frozenset({_RUNNING, _BAKING})
_CANARY = Arm.CANARY  # module constants: looking a member up on an Enum class costs ~100 ns


class RolloutObserver(Protocol):
    """Told about every decision and every change (the gateway's metrics implement it)."""

    def on_decision(self, rollout: Rollout, decision: Decision) -> None: ...

    def on_change(self, rollout: Rollout) -> None: ...


WatchEvent = tuple[Rollout, Decision | None]


class _Active:
    """The live side of an active rollout: per-second counts, stage evidence, progress, lock, watchers."""

    __slots__ = ("rollout", "lock", "evidence", "baseline", "recent_primary", "seconds", "last_second",
                 "last_pair", "canary_requests", "elapsed_base", "running_since", "next_check_at", "watchers")

    def __init__(self, rollout: Rollout, now: float) -> None:
        #: The current (saved) rollout.
        self.rollout = rollout
        self.lock = asyncio.Lock()
        #: Primary's analysed calls over the earlier stages.
        self.baseline = ArmSlice.from_json(rollout.baseline) if rollout.baseline else ArmSlice()
        self.evidence = _stage_evidence(rollout, self.baseline)
        #: Primary's latencies over its last `window` seconds of traffic (sets stage thresholds).
        self.recent_primary = RecentLatency(rollout.analysis.window_s)
        #: Counts of the seconds not yet folded into the evidence: second → [primary, canary].
        self.seconds: dict[int, list[ArmSlice]] = {}
        self.last_second = -1
        self.last_pair: list[ArmSlice] = []
        #: Analysed canary requests in the stage (counted while RUNNING).
        self.canary_requests = rollout.stage_canary_requests
        #: Stage time at `running_since`; the stage clock runs only while `running_since` is set.
        self.elapsed_base = rollout.stage_elapsed_s
        self.running_since: float | None = now if rollout.state in _CLOCKED else None
        self.next_check_at = now + rollout.analysis.interval_s
        self.watchers: set[asyncio.Queue[WatchEvent | None]] = set()

    def elapsed(self, now: float) -> float:
        if self.running_since is None:
            return self.elapsed_base
        return self.elapsed_base + max(0.0, now - self.running_since)

    def live(self, now: float) -> Rollout:
        """The current rollout with its stage time, canary count and evidence as of `now`."""
        quality = self.evidence.quality
        return dataclasses.replace(self.rollout, stage_elapsed_s=self.elapsed(now),
                                   stage_canary_requests=self.canary_requests,
                                   evidence=self.evidence.to_json(), baseline=self.baseline.to_json(),
                                   quality=None if quality is None else quality.summary())

    def fold(self, now: float) -> None:
        """Fold every complete second (before `now`'s) into the evidence; fix the latency threshold
        as soon as primary's recent traffic allows."""
        current = int(now)
        complete = sorted(second for second in self.seconds if second < current)
        evidence = self.evidence
        policy = self.rollout.analysis
        for second in complete:
            primary, canary = self.seconds.pop(second)
            evidence.add_second(primary, canary)
            self.recent_primary.add(primary)
            if evidence.threshold is None:
                threshold = latency_threshold(policy, self.recent_primary.merged())
                if threshold is not None:
                    evidence.fix_threshold(threshold)

    def new_stage(self, rollout: Rollout) -> None:
        """Start the evidence of `rollout`'s (new) stage; primary's calls so far join the baseline."""
        self.baseline.add(self.evidence.primary)
        self.evidence = _stage_evidence(dataclasses.replace(rollout, evidence=None), self.baseline)
        self.seconds.clear()
        self.last_second = -1
        threshold = latency_threshold(rollout.analysis, self.recent_primary.merged())
        if threshold is not None:
            self.evidence.fix_threshold(threshold)


def _stage_evidence(rollout: Rollout, baseline: ArmSlice) -> StageEvidence:
    if rollout.evidence:
        return StageEvidence.from_json(rollout.analysis, rollout.stage, rollout.weight_bps, rollout.evidence,
                                       baseline=baseline)
    return StageEvidence(rollout.analysis, rollout.stage, rollout.weight_bps, baseline=baseline)


class RolloutController:
    """Owns every rollout: the API behind RolloutService, the analysis loop, the router's tables.

    `switch_alias(logical, physical)` and `resolve_alias(logical) -> physical` are the backend's
    alias operations; `delete_collection(physical)` and `list_aliases() -> {alias: target}` are what
    the grace period's DELETE needs; `vector_space(physical) -> (dimension, model)` lets CreateRollout
    refuse arms in different vector spaces unless both name their model (`model.check_arm_spaces`). `clock` is monotonic seconds (stage time, windows, check schedule);
    `wall_clock` is epoch seconds (decision and rollout times). `sleep` is what `run()` waits with.
    """

    def __init__(
        self,
        store: RolloutStore,
        router: Router,
        *,
        switch_alias: SwitchAlias,
        resolve_alias: ResolveAlias,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        observer: RolloutObserver | None = None,
        sleep: Sleep = asyncio.sleep,
        tick_interval: float = 1.0,
        max_routine_decisions: int = DEFAULT_MAX_ROUTINE_DECISIONS,
        page_tokens: PageTokens | None = None,
        write_order: WriteOrder | None = None,
        backfill: Backfill | None = None,
        preflight: PreflightRunner | None = None,
        backfill_retry_s: float = BACKFILL_RETRY_S,
        leadership: Leadership | None = None,
        counts: CountsExchange | None = None,
        delete_collection: DeleteCollection | None = None,
        list_aliases: ListAliases | None = None,
        vector_space: DescribeSpace | None = None,
        has_bm25: HasBm25 | None = None,
    ) -> None:
        if tick_interval <= 0:
            raise ValueError("tick_interval must be positive")
        if max_routine_decisions < 1:
            raise ValueError("max_routine_decisions must be at least 1")
        self._store = store
        self._router = router
        self._switch_alias = switch_alias
        self._resolve_alias = resolve_alias
        self._clock = clock
        self._wall_clock = wall_clock
        self._observer = observer
        self._sleep = sleep
        self._tick_interval = tick_interval
        self._max_routine_decisions = max_routine_decisions
        self._page_tokens = page_tokens or PageTokens()
        #: SearchCore's write order: creation holds the collection's writes until its routes are published.
        self._write_order = write_order or WriteOrder()
        #: What the grace period's DELETE uses (without them the old collection is kept, and the decision says why).
        self._delete_collection = delete_collection
        self._list_aliases = list_aliases
        #: A physical collection's (dimension, model): CreateRollout checks the arms are compatible.
        self._vector_space = vector_space
        #: Whether a physical collection has a BM25 index: CreateRollout refuses a canary without primary's.
        self._has_bm25 = has_bm25
        #: Every rollout by name, ended ones too.
        self._rollouts: dict[str, Rollout] = {}
        self._active: dict[str, _Active] = {}
        self._create_lock = asyncio.Lock()
        #: Checks a new rollout's collection must pass (under the creation lock): each raises (e.g.
        #: FailedPrecondition while an experiment holds the alias) or returns. Appended by the server.
        self.alias_guards: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None
        #: Ended rollouts (promoted, aborted, rolled back) the store has not taken yet: the end took
        #: effect in routing at once, and the save is tried again on every tick until the store recovers.
        self._unsaved: dict[str, Rollout] = {}
        #: Transitions still running after their caller stopped waiting (see `_to_completion`).
        self._detached: set[asyncio.Task[Any]] = set()
        #: PrepareRollout's parts: the canary's creation and backfill, and the pre-flight (None: refused).
        self._backfill = backfill
        self._preflight = preflight
        self._backfill_retry_s = backfill_retry_s
        #: The running backfill of each PREPARING rollout, by name.
        self._backfills: dict[str, asyncio.Task[None]] = {}
        #: Whether this replica decides now, and where the other replicas' counts come from.
        self._leadership: Leadership = leadership or SoleLeadership()
        self._counts: CountsExchange = counts or LocalCounts()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, run_loop: bool = True) -> None:
        """Restore every rollout from the store, publish routes, and (unless told not to) start `run()`."""
        now = self._clock()
        for rollout in await self._store.load_all():
            self._rollouts[rollout.name] = rollout
            if rollout.state.is_active:
                self._active[rollout.name] = _Active(rollout, now)
        self._publish_routes()
        for active in list(self._active.values()):
            await self._finish_interrupted_promotion(active)
        for rollout in self._rollouts.values():
            self._notify_change(rollout)
        for active in list(self._active.values()):
            if active.rollout.state is _PREPARING:
                self._start_backfill(active.rollout.name)  # continues at its saved cursor
        log.info("rollout controller started", extra={"rollouts": len(self._rollouts),
                                                      "active_rollouts": len(self._active)})
        if run_loop:
            self._task = asyncio.create_task(self.run(), name="rollout-controller")

    async def stop(self) -> None:
        """Stop the loop, save each active rollout's stage time and evidence, and end every watch."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stop_backfills()
        if self._detached:  # transitions whose caller went away: let them finish (they never hang)
            await asyncio.gather(*self._detached, return_exceptions=True)
        await self._save_unsaved()
        if not self._leadership.is_leader:  # a follower's progress is the leader's to save
            with contextlib.suppress(SearchgwError):
                await self._share_counts(self._clock() + 1.0)
            for active in list(self._active.values()):
                for queue in active.watchers:
                    queue.put_nowait(None)
            return
        for active in list(self._active.values()):
            async with active.lock:
                now = self._clock()
                active.fold(now + 1.0)  # the current second too: no call is recorded after this
                try:
                    await self._store.save(active.live(now))
                except SearchgwError:
                    log.exception("could not save rollout progress", extra={"rollout": active.rollout.name})
            for queue in active.watchers:
                queue.put_nowait(None)

    async def run(self) -> None:
        """Tick every `tick_interval` until cancelled."""
        while True:
            await self.tick()
            await self._sleep(self._tick_interval)

    async def tick(self) -> None:
        """Check every active rollout whose interval has elapsed. One rollout's failure spares the others.

        Ended rollouts the store has not taken yet are saved first.
        """
        await self._save_unsaved()
        now = self._clock()
        if not self._leadership.is_leader:
            await self._share_counts(now)
            return
        for active in list(self._active.values()):
            if active.rollout.state in PREPARATION_STATES:
                active.seconds.clear()  # primary's calls before StartRollout are not judged: drop them
                if active.rollout.state is _PREPARING:
                    self._start_backfill(active.rollout.name)  # adopted, or led here since: the leader copies
                continue
            if active.next_check_at > now:
                continue
            try:
                await self._to_completion(self._check(active))
            except Exception:
                log.exception("rollout check failed", extra={"rollout": active.rollout.name})
        await self._end_grace_periods()

    async def _share_counts(self, now: float) -> None:
        """A follower's tick: hand every active rollout's complete seconds to the counts exchange."""
        try:
            for active in list(self._active.values()):
                await self._counts.share(active.rollout.name, active.seconds, now)
        except SearchgwError as exc:
            log.debug("counts not shared yet (kept for the next tick): %s", exc.message)

    # -- several replicas --------------------------------------------------------------------------

    async def adopt(self, stored: Rollout, still_newer: Callable[[], bool] = lambda: True) -> bool:
        """Make `stored` — saved by another replica — current here: routes, watchers, gauges.

        `still_newer()` is asked under the rollout's lock whether memory is still older than
        `stored` (a save of this replica may have overtaken it); False leaves everything as it is.
        Returns whether `stored` was adopted. Decisions reach this replica's watchers, but are
        logged and counted (the observer's `on_decision`) only by the replica that took them.
        """
        name = stored.name
        active = self._active.get(name)
        if active is None:
            async with self._create_lock:
                if not still_newer():
                    return False
                known = self._rollouts.get(name)
                pending = self._unsaved.get(name)
                if pending is not None:
                    return self._rebase_unsaved(pending, stored)
                self._rollouts[name] = stored
                if stored.state.is_active and (known is None or known.state.is_active):
                    self._active[name] = _Active(stored, self._clock())
                    self._publish_routes()
                self._notify_change(stored)
                if known is None:
                    log.info("rollout %s adopted from the shared state", name,
                             extra={"rollout": name, "state": stored.state.name})
                return True
        async with active.lock:
            if not still_newer() or self._active.get(name) is not active:
                return False
            now = self._clock()
            previous = active.rollout
            last = previous.decisions[-1] if previous.decisions else None
            fresh = [d for d in stored.decisions
                     if last is None or d.seq > last.seq or (d.seq == last.seq and d.repeats != last.repeats)]
            same_stage = (stored.current_stage, stored.weight_percent) == (previous.current_stage,
                                                                          previous.weight_percent)
            seen = active.evidence
            active.rollout = stored
            active.baseline = ArmSlice.from_json(stored.baseline) if stored.baseline else ArmSlice()
            active.evidence = _stage_evidence(stored, active.baseline)
            if same_stage:
                active.evidence.carry_keys(seen)
            active.elapsed_base = stored.stage_elapsed_s
            active.running_since = now if stored.state in _CLOCKED else None
            if not (same_stage and self._leadership.is_leader):  # the leader's own count includes everyone's
                active.canary_requests = stored.stage_canary_requests
            self._rollouts[name] = stored
            if not stored.state.is_active:
                del self._active[name]
            if (previous.state, previous.weight_percent) != (stored.state, stored.weight_percent):
                self._publish_routes()
            for decision in fresh:  # logged and counted by the replica that took it
                for queue in active.watchers:
                    queue.put_nowait((stored, decision))
            self._notify_change(stored)
            if not stored.state.is_active:
                for queue in active.watchers:
                    queue.put_nowait(None)
            return True

    def _rebase_unsaved(self, pending: Rollout, stored: Rollout) -> bool:
        """Another replica saved `stored` while this one's end `pending` waited for the store.

        A person's abort is re-applied on top of `stored` (its decisions after stored's), so the next
        save builds on the newer version; a controller's end is dropped when this replica no longer
        leads (the leader judges on its own evidence), and so is any end once `stored` has ended.
        """
        name = pending.name
        if stored.state.is_active and (pending.decisions[-1].actor != CONTROLLER_ACTOR or self._leadership.is_leader):
            stored_keys = {(d.seq, d.kind, d.time) for d in stored.decisions}
            mine = [d for d in pending.decisions if (d.seq, d.kind, d.time) not in stored_keys]
            seq = stored.decisions[-1].seq if stored.decisions else 0
            renumbered = tuple(dataclasses.replace(d, seq=seq + i) for i, d in enumerate(mine, start=1))
            self._unsaved[name] = dataclasses.replace(
                stored, state=pending.state, weight_percent=pending.weight_percent, update_time=pending.update_time,
                decisions=(*stored.decisions, *renumbered))
            self._rollouts[name] = self._unsaved[name]
            return True
        del self._unsaved[name]
        log.warning("rollout %s: the %s not yet saved here is dropped for the newer shared state (%s)",
                    name, pending.state.name, stored.state.name, extra={"rollout": name})
        self._rollouts[name] = stored
        if stored.state.is_active:
            self._active[name] = _Active(stored, self._clock())
            self._publish_routes()
        self._notify_change(stored)
        return True

    # -- the hot path ----------------------------------------------------------------------------

    def record(self, rollout: str, arm: Arm, code_name: str, latency_s: float, key: str = "") -> None:
        """Count one analysed request of `rollout` (a RouteDecision's `rollout`); O(1), no I/O.

        `code_name` is how the call ended for the arm that served it; `key` is the routing key it
        was routed by (its first sight this stage counts for the split test). Requests of a rollout
        that has ended are ignored. Call it from the event loop's thread.
        """
        active = self._active.get(rollout)
        if active is None:
            return
        new_key = bool(key) and active.evidence.first_sight(key)
        pair = self._slices_now(active)
        if arm is _CANARY:
            pair[1].record(code_name, latency_s, new_key)
            if active.running_since is not None:
                active.canary_requests += 1
        else:
            pair[0].record(code_name, latency_s, new_key)

    def _slices_now(self, active: _Active) -> list[ArmSlice]:
        """The [primary, canary] counts of the current second (made on its first use; the last one is
        kept at hand, so the common case is one comparison)."""
        second = int(self._clock())
        if second != active.last_second:
            pair = active.seconds.get(second)
            if pair is None:
                pair = active.seconds[second] = [ArmSlice(), ArmSlice()]
            active.last_second, active.last_pair = second, pair
        return active.last_pair

    def quality_policy(self, rollout: str) -> QualityPolicy | None:
        """The shadow-comparison policy of an active rollout that takes traffic, when it samples any
        (None otherwise: no rollout of that name, before StartRollout, or sampling off). O(1)."""
        active = self._active.get(rollout)
        if active is None or active.rollout.state in PREPARATION_STATES:
            return None
        policy = active.rollout.analysis.quality
        return policy if policy.enabled else None

    def record_comparison(self, rollout: str, overlap: float, rbo: float, differing: Sequence[str] = ()) -> None:
        """Count one shadow comparison of `rollout`'s arms (quality.ShadowComparison's numbers) in the
        second it ended; O(1) but for `differing`, no I/O. Not a call: it changes no arm's numbers.
        Comparisons of a rollout that has ended, or is not taking traffic, are ignored."""
        active = self._active.get(rollout)
        if active is None or active.rollout.state in PREPARATION_STATES or active.evidence.quality is None:
            return
        self._slices_now(active)[1].record_comparison(overlap, rbo)
        if differing:
            active.evidence.quality.differing.add(differing)

    # -- reads -------------------------------------------------------------------------------------

    async def get(self, name: str) -> Rollout:
        """The rollout with its decisions; NotFound when there is none of that name."""
        return self._view(self._find(name))

    async def list(self, collection: str | None = None, page_size: int = 0,
                   page_token: str = "") -> Page[Rollout]:
        """A page of rollouts, newest first, and the token of the next page ("" on the last)."""
        collection = collection or ""
        page = self._page_tokens.paginate(
            (r for r in self._rollouts.values() if not collection or r.collection == collection), key=_newest_first,
            page_size=page_size, page_token=page_token, listing="rollouts", query=(collection,))
        return Page([self._view(r) for r in page.items], page.next_page_token)

    async def watch(self, name: str) -> AsyncIterator[WatchEvent]:
        """Yield (rollout, None) now, then (rollout, decision) for every decision, in order.

        Ends after the decision that ends the rollout, on `stop()`, or when the caller stops
        iterating. NotFound (raised at the first iteration) when there is no such rollout.
        """
        rollout = self._find(name)
        active = self._active.get(name)
        if active is None:
            yield rollout, None
            return
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        async with active.lock:  # decisions are announced under the lock: none is missed or repeated
            current = self._view(active.rollout)
            if current.state.is_active:
                active.watchers.add(queue)
        try:
            yield current, None
            if not current.state.is_active:
                return
            while (event := await queue.get()) is not None:
                yield event
        finally:
            active.watchers.discard(queue)

    # -- writes ------------------------------------------------------------------------------------

    async def create(self, rollout: Rollout, actor: str = "") -> Rollout:
        """Start a rollout at its first stage. Output-only fields of `rollout` are ignored.

        InvalidArgument for a bad spec; AlreadyExists for a taken name or a collection with an
        active rollout; NotFound (from `resolve_alias`) for an unknown collection; FailedPrecondition
        when `collection` is not an alias (promotion switches one), `primary_collection` is set but is
        not what the collection points at, or the arms hold different vector spaces (model or dimension)
        without both naming their embedding model (reason INCOMPATIBLE_ARMS, both spaces in the message).
        """
        return await self._to_completion(self._create(rollout, actor))

    async def _create(self, rollout: Rollout, actor: str = "") -> Rollout:
        spec = validate_new_rollout(rollout)
        actor = actor or ANONYMOUS_ACTOR
        async with self._create_lock:
            # Writes to the collection wait, and those in flight finish, until the routes are published:
            # no write that started before them can land in primary only once the rollout is live.
            async with self._write_order.publishing(spec.collection):
                return await self._create_locked(spec, actor)

    @property
    def creation_lock(self) -> asyncio.Lock:
        """Held while a rollout is created or prepared; whatever else claims aliases (experiments) takes it too."""
        return self._create_lock

    def active_rollout_on(self, collection: str) -> str | None:
        """The name of the active rollout on logical `collection`, or None."""
        return next((a.rollout.name for a in self._active.values() if a.rollout.collection == collection), None)

    async def _claim(self, spec: Rollout) -> str:
        """Check that `spec` may start on its collection now; the physical collection its alias points at."""
        if spec.name in self._rollouts:
            raise AlreadyExists(f"a rollout named {spec.name!r} already exists; pick another name",
                                reason="ROLLOUT_EXISTS", metadata={"rollout": spec.name})
        for guard in self.alias_guards:
            guard(spec.collection)
        busy = next((a.rollout for a in self._active.values() if a.rollout.collection == spec.collection), None)
        if busy is not None:
            raise AlreadyExists(
                f"collection {spec.collection!r} already has an active rollout {busy.name!r} "
                f"({busy.state.name}); promote or abort it first",
                reason="ACTIVE_ROLLOUT_EXISTS", metadata={"collection": spec.collection, "rollout": busy.name})
        target = await self._resolve_alias(spec.collection)
        if target == spec.collection:
            raise FailedPrecondition(
                f"rollout.collection {spec.collection!r} is a collection, not an alias: promotion switches "
                f"an alias, so a rollout needs one (create an alias pointing at {spec.collection!r} and roll "
                f"that out)", reason="NOT_AN_ALIAS", metadata={"collection": spec.collection})
        if spec.primary_collection and spec.primary_collection != target:
            raise FailedPrecondition(
                f"rollout.primary_collection {spec.primary_collection!r} is not what {spec.collection!r} "
                f"points at ({target!r}); leave it empty or set it to {target!r}")
        if spec.canary_collection == target:
            raise InvalidArgument("rollout.canary_collection",
                                  f"{target!r} is what {spec.collection!r} already points at")
        return target

    async def _create_locked(self, spec: Rollout, actor: str) -> Rollout:
        """The body of `_create`, under the create lock with the collection's writes held."""
        target = await self._claim(spec)
        if await self._resolve_alias(spec.canary_collection) != spec.canary_collection:
            raise InvalidArgument("rollout.canary_collection",
                                  f"{spec.canary_collection!r} is an alias; name the physical collection")
        if self._vector_space is not None:
            check_arm_spaces(target, await self._vector_space(target), spec.canary_collection,
                             await self._vector_space(spec.canary_collection))
        if self._has_bm25 is not None:
            check_arm_bm25(target, await self._has_bm25(target), spec.canary_collection,
                           await self._has_bm25(spec.canary_collection))
        now, wall = self._clock(), self._wall_clock()
        first = spec.stages[0]
        # A spec that asks for a pre-flight waits PREPARED, with no traffic, for ValidateRollout and StartRollout.
        preflight_first = spec.preflight_policy is not None
        started = dataclasses.replace(
            spec, primary_collection=target, state=_PREPARED if preflight_first else _RUNNING, current_stage=0,
            weight_percent=0.0 if preflight_first else first.weight_percent, decisions=(), create_time=wall,
            update_time=wall, stage_elapsed_s=0.0, consecutive_failures=0, total_failures=0,
            salt=secrets.token_hex(8), stage_clean_since_s=0.0, stage_canary_requests=0,
            backfill=None, preflight=None,
        )
        started, decision = self._decide(
            started, DecisionKind.STARTED, actor, wall,
            f"created PREPARED: canary {spec.canary_collection!r} takes writes but no searches until a pre-flight "
            f"passes (ValidateRollout) and StartRollout" if preflight_first else
            f"started at {started.stage_label}: {first.weight_percent:g}% of keyed traffic to canary "
            f"{spec.canary_collection!r}, the rest to primary {target!r}",
        )
        await self._store.save(started)
        active = _Active(started, now)
        self._rollouts[started.name] = started
        self._active[started.name] = active
        self._publish_routes()
        self._announce(active, started, [decision])
        return started

    async def pause(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        """Freeze the weight and the stage clock of a RUNNING rollout (checks still run and count)."""
        return await self._to_completion(self._pause(name, reason, actor))

    async def _pause(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        check_reason(reason)
        async with self._transition(name, "pause", {_RUNNING}) as active:
            now = self._clock()
            draft = active.live(now)
            draft, decision = self._decide(
                dataclasses.replace(draft, state=_PAUSED), DecisionKind.PAUSED, actor, self._wall_clock(),
                _with_reason(f"paused at {draft.stage_label} after {draft.stage_elapsed_s:.0f} s in the stage; "
                             f"weight stays {draft.weight_percent:g}%", reason),
            )
            return await self._commit(active, draft, [decision], now)

    async def resume(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        """Continue a PAUSED rollout in the same stage, its clock where it stopped.

        The split test starts over (a mismatch pauses the rollout; whoever resumes has looked).
        """
        return await self._to_completion(self._resume(name, reason, actor))

    async def _resume(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        check_reason(reason)
        async with self._transition(name, "resume", {_PAUSED}) as active:
            now = self._clock()
            active.evidence.restart_split()
            draft = active.live(now)
            draft, decision = self._decide(
                dataclasses.replace(draft, state=_RUNNING), DecisionKind.RESUMED, actor, self._wall_clock(),
                _with_reason(f"resumed at {draft.stage_label} with {draft.stage_elapsed_s:.0f} s in the stage; "
                             f"the split test starts over", reason),
            )
            return await self._commit(active, draft, [decision], now)

    async def promote(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        """Point the logical collection at the canary now (one alias switch; the old collection stays).

        Allowed in every active state. If the switch fails the rollout is unchanged and the error
        propagates.
        """
        return await self._to_completion(self._promote(name, reason, actor))

    async def _promote(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        check_reason(reason)
        async with self._transition(name, "promote", ACTIVE_STATES - PREPARATION_STATES) as active:
            current = active.rollout
            if current.state is _BAKING:
                now = self._clock()
                live = active.live(now)
                return await self._complete_bake(
                    active, live, now, self._wall_clock(), actor,
                    _with_reason(f"bake ended early by promotion after {live.stage_elapsed_s:.0f}/"
                                 f"{live.promotion.bake_s:.0f} s: {_bake_end_effect(live)}", reason))
            await self._point_alias_at_canary(current)
            now = self._clock()
            draft, decision = self._after_switch(
                active, active.live(now), actor, self._wall_clock(),
                f"promoted from {current.state.name} at {current.stage_label}: {_promotion_effect(current)}",
                reason=reason)
            return await self._commit(active, draft, [decision], now, reset_progress=True, switched=True)

    async def abort(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        """End an active rollout: weight 0 at once, state ABORTED, alias untouched."""
        return await self._to_completion(self._abort(name, reason, actor))

    async def _abort(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        check_reason(reason)
        async with self._transition(name, "abort", _BEFORE_PROMOTION) as active:
            now = self._clock()
            current = active.live(now)
            draft, decision = self._decide(
                dataclasses.replace(current, state=RolloutState.ABORTED, weight_percent=0.0),
                DecisionKind.ABORTED, actor, self._wall_clock(),
                _with_reason(f"aborted at {current.stage_label}: all traffic back to primary "
                             f"{current.primary_collection!r}", reason),
            )
            return await self._commit(active, draft, [decision], now)

    # -- preparation: PrepareRollout, the backfill, ValidateRollout, StartRollout (see docs/canary.md) ---

    async def prepare(self, rollout: Rollout, canary: CanaryOverrides = CanaryOverrides(), *,
                      batch_size: int = 0, actor: str = "") -> Rollout:
        """Create the canary from primary's spec (with `canary`'s overrides) and start backfilling it.

        The rollout is PREPARING from the start: writes reach both arms (ordered per id), searches only
        primary. The backfill runs in the background (`rollout.backfill` shows its progress) and ends
        PREPARED. Errors as `create`, and AlreadyExists when the canary collection exists already.
        """
        return await self._to_completion(self._prepare(rollout, canary, batch_size, actor))

    async def _prepare(self, rollout: Rollout, canary: CanaryOverrides, batch_size: int, actor: str) -> Rollout:
        spec = validate_new_rollout(rollout)
        if isinstance(batch_size, bool) or not 0 <= batch_size <= MAX_BACKFILL_BATCH:
            raise InvalidArgument("batch_size", f"{batch_size}; must lie in [0, {MAX_BACKFILL_BATCH}] (0: default)")
        backfill = self._backfill
        if backfill is None:
            raise FailedPrecondition("this gateway cannot prepare rollouts (no backfill configured)")
        actor = actor or ANONYMOUS_ACTOR
        async with self._create_lock:
            async with self._write_order.publishing(spec.collection):
                target = await self._claim(spec)
                if await backfill.exists(spec.canary_collection):
                    raise AlreadyExists(
                        f"rollout.canary_collection {spec.canary_collection!r} exists; PrepareRollout creates the "
                        f"canary (name a new collection, or CreateRollout to roll out an existing one)",
                        reason="CANARY_EXISTS", metadata={"collection": spec.canary_collection})
                created = await backfill.create_canary(target, spec.canary_collection, canary)
                try:
                    started, decision = await self._prepared_rollout(spec, target, created, batch_size, actor)
                    await self._store.save(started)
                except BaseException:
                    await backfill.discard_canary(spec.canary_collection)
                    raise
                active = _Active(started, self._clock())
                self._rollouts[started.name] = started
                self._active[started.name] = active
                self._publish_routes()
                self._announce(active, started, [decision])
        self._start_backfill(started.name)
        return started

    async def _prepared_rollout(self, spec: Rollout, target: str, canary: CollectionSpec, batch_size: int,
                                actor: str) -> tuple[Rollout, Decision]:
        assert self._backfill is not None
        wall = self._wall_clock()
        total = await self._backfill.count(target)
        primary = await self._backfill.spec_of(target)
        progress = BackfillProgress(total=total, batch_size=batch_size or DEFAULT_BACKFILL_BATCH, start_time=wall,
                                    update_time=wall)
        draft = dataclasses.replace(
            spec, primary_collection=target, state=_PREPARING, current_stage=0, weight_percent=0.0, decisions=(),
            create_time=wall, update_time=wall, stage_elapsed_s=0.0, consecutive_failures=0, total_failures=0,
            salt=secrets.token_hex(8), stage_clean_since_s=0.0, stage_canary_requests=0, backfill=progress,
            preflight=None)
        how = (f"re-embedding each point's stored text with {canary.embedding_model!r} ({canary.dimension}-d; "
               f"primary: {primary.embedding_model!r}, {primary.dimension}-d)" if needs_reembedding(primary, canary)
               else f"copying vectors ({canary.embedding_model!r}, {canary.dimension}-d)")
        return self._decide(
            draft, DecisionKind.BACKFILL_STARTED, actor, wall,
            f"canary {canary.name!r} created from {target!r}'s spec ({canary.distance.value}, hnsw m="
            f"{canary.hnsw_m} ef={canary.hnsw_ef_construct}, quantization "
            f"{'int8' if canary.scalar_quantization else 'none'}); backfilling {total} points in pages of "
            f"{progress.batch_size}, {how}; writes reach both arms, searches only primary")

    def _start_backfill(self, name: str) -> None:
        if self._backfill is None or name in self._backfills:
            return
        task = asyncio.create_task(self._run_backfill(name), name=f"backfill-{name}")
        self._backfills[name] = task
        task.add_done_callback(lambda done: self._backfills.pop(name, None) if self._backfills.get(name) is done
                               else None)

    async def backfill_ended(self, name: str) -> None:
        """Return once the backfill of rollout `name` is not running (now, or when it has ended)."""
        task = self._backfills.get(name)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _stop_backfills(self) -> None:
        tasks = list(self._backfills.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_backfill(self, name: str) -> None:
        """Backfill until done (then PREPARED), the rollout leaves PREPARING, or the task is cancelled."""
        assert self._backfill is not None
        while True:
            active = self._active.get(name)
            if active is None or active.rollout.state is not _PREPARING or not self._leadership.is_leader:
                return  # ended, or another replica leads (its tick starts the backfill there)
            try:
                progress = await self._backfill.run(active.rollout, lambda p: self._save_backfill(name, p))
            except _BackfillStopped:
                return
            except Exception as exc:  # the backend or embedder failed: record it, wait, go on from the cursor
                await self._backfill_failed(name, exc)
                await self._sleep(self._backfill_retry_s)
                continue
            await self._to_completion(self._backfill_done(name, progress))
            return

    async def _save_backfill(self, name: str, progress: BackfillProgress) -> None:
        """Persist a page's progress (the cursor) with the rollout; stop when it is no longer PREPARING."""
        active = self._active.get(name)
        if active is None:
            raise _BackfillStopped()
        async with active.lock:
            if active.rollout.state is not _PREPARING or not self._leadership.is_leader:
                raise _BackfillStopped()
            now = self._clock()
            draft = dataclasses.replace(active.live(now), backfill=progress, update_time=self._wall_clock())
            await self._commit(active, draft, [], now)

    async def _backfill_failed(self, name: str, exc: Exception) -> None:
        message = exc.message if isinstance(exc, SearchgwError) else f"{type(exc).__name__}: {exc}"
        log.warning("backfill of rollout %s failed (%s); retried in %gs from its cursor", name, message,
                    self._backfill_retry_s, exc_info=not isinstance(exc, SearchgwError), extra={"rollout": name})
        active = self._active.get(name)
        if active is None:
            return
        async with active.lock:
            current = active.rollout
            if current.state is not _PREPARING or current.backfill is None or current.backfill.last_error == message:
                return  # the same failure again: logged, not another decision
            now = self._clock()
            draft = dataclasses.replace(active.live(now),
                                        backfill=dataclasses.replace(current.backfill, last_error=message))
            draft, decision = self._decide(
                draft, DecisionKind.BACKFILL_FAILED, CONTROLLER_ACTOR, self._wall_clock(),
                f"backfill failed after {current.backfill.copied} of {current.backfill.total} points: {message}; "
                f"retried every {self._backfill_retry_s:g}s from its cursor (abort the rollout to give up)")
            with contextlib.suppress(SearchgwError):  # the store may be what failed; the log has it
                await self._commit(active, draft, [decision], now)

    async def _backfill_done(self, name: str, progress: BackfillProgress) -> None:
        active = self._active.get(name)
        if active is None:
            return
        async with active.lock:
            if active.rollout.state is not _PREPARING:
                return
            now = self._clock()
            failed = (f"; {progress.failed} FAILED (no stored text to re-embed, e.g. ids "
                      f"{', '.join(map(str, progress.failed_ids))}): the pre-flight's count check will show them"
                      if progress.failed else "")
            draft, decision = self._decide(
                dataclasses.replace(active.live(now), state=_PREPARED, backfill=progress),
                DecisionKind.BACKFILL_COMPLETED, CONTROLLER_ACTOR, self._wall_clock(),
                f"backfill complete: {progress.copied} of {progress.total} points copied ({progress.reembedded} "
                f"re-embedded), {progress.superseded} superseded by newer writes{failed}; run ValidateRollout next")
            await self._commit(active, draft, [decision], now)

    async def validate(self, name: str, queries: Sequence[str] = (), policy: PreflightPolicy | None = None,
                       actor: str = "") -> Rollout:
        """Run the pre-flight of a PREPARED rollout and record it (PREFLIGHT_PASSED or PREFLIGHT_FAILED).

        `queries` are texts to compare the arms on (none: a sample of primary's stored texts); `policy`
        replaces the rollout's `preflight_policy` (zero fields: defaults). The result is
        `rollout.preflight`.
        """
        if len(queries) > MAX_PREFLIGHT_SAMPLE:
            raise InvalidArgument("queries", f"{len(queries)} queries; at most {MAX_PREFLIGHT_SAMPLE}")
        if policy is not None:
            policy = policy.with_defaults()
            policy.validate("policy")
        return await self._to_completion(self._validate(name, tuple(queries), policy, actor))

    async def _validate(self, name: str, queries: tuple[str, ...], policy: PreflightPolicy | None,
                        actor: str) -> Rollout:
        rollout = self._find(name)
        if rollout.state is not _PREPARED:
            raise _illegal(rollout, "validate", {_PREPARED})
        if self._preflight is None:
            raise FailedPrecondition("this gateway cannot run pre-flights (no pre-flight runner configured)")
        effective = policy or (rollout.preflight_policy or PreflightPolicy()).with_defaults()
        result = await self._preflight.run(rollout.primary_collection, rollout.canary_collection, effective, queries,
                                           seed=rollout.salt or rollout.name, wall_clock=self._wall_clock)
        async with self._transition(name, "validate", {_PREPARED}) as active:
            now = self._clock()
            kind = DecisionKind.PREFLIGHT_PASSED if result.passed else DecisionKind.PREFLIGHT_FAILED
            draft, decision = self._decide(dataclasses.replace(active.live(now), preflight=result), kind,
                                           actor or ANONYMOUS_ACTOR, self._wall_clock(), result.summary)
            return await self._commit(active, draft, [decision], now)

    async def start_traffic(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        """StartRollout: a PREPARED rollout with a passed pre-flight goes RUNNING at its first stage."""
        return await self._to_completion(self._start_traffic(name, reason, actor))

    async def _start_traffic(self, name: str, reason: str, actor: str) -> Rollout:
        check_reason(reason)
        async with self._transition(name, "start", {_PREPARED}) as active:
            current = active.rollout
            preflight = current.preflight
            command = f"searchgw rollout validate {name}"
            if preflight is None:
                raise FailedPrecondition(f"cannot start rollout {name!r}: no pre-flight has run; run ValidateRollout "
                                         f"({command}) and start once it passes", reason="PREFLIGHT_REQUIRED")
            if not preflight.passed:
                raise FailedPrecondition(f"cannot start rollout {name!r}: its last pre-flight failed "
                                         f"({preflight.summary}); fix the canary and run ValidateRollout ({command}) "
                                         f"again, or abort it", reason="PREFLIGHT_FAILED")
            if current.backfill is not None and preflight.time < current.backfill.update_time:
                raise FailedPrecondition(f"cannot start rollout {name!r}: its pre-flight is older than the backfill's "
                                         f"last write batch; run ValidateRollout ({command}) again",
                                         reason="PREFLIGHT_STALE")
            now = self._clock()
            first = current.stages[0]
            draft = dataclasses.replace(active.live(now), state=_RUNNING, current_stage=0,
                                        weight_percent=first.weight_percent, stage_elapsed_s=0.0,
                                        stage_clean_since_s=0.0, stage_canary_requests=0, evidence=None, baseline=None)
            # The analysis starts now: nothing recorded while the canary had no traffic counts.
            active.baseline = ArmSlice()
            active.evidence = _stage_evidence(draft, active.baseline)
            active.seconds.clear()
            active.last_second = -1
            active.next_check_at = now + draft.analysis.interval_s
            draft = dataclasses.replace(draft, evidence=active.evidence.to_json(), baseline=active.baseline.to_json())
            draft, decision = self._decide(
                draft, DecisionKind.STARTED, actor, self._wall_clock(),
                _with_reason(f"started at {draft.stage_label} after a passed pre-flight: {first.weight_percent:g}% of "
                             f"keyed traffic to canary {current.canary_collection!r}, the rest to primary "
                             f"{current.primary_collection!r}", reason))
            return await self._commit(active, draft, [decision], now, reset_progress=True)

    # -- the analysis step ---------------------------------------------------------------------------

    async def _check(self, active: _Active) -> None:
        async with active.lock:
            now = self._clock()
            if not active.rollout.state.is_active or active.next_check_at > now:
                return  # ended or checked while this tick waited for the lock
            active.next_check_at = now + active.rollout.analysis.interval_s
            horizon, others = await self._counts.gather(active.rollout.name, active.seconds, now,
                                                        canary_running=active.running_since is not None)
            active.canary_requests += others
            active.fold(horizon)
            current = active.live(now)
            verdict = judge(active.evidence)
            wall = self._wall_clock()
            if current.state is _BAKING:
                await self._check_bake(active, current, verdict, now, wall)
            elif verdict.outcome is CheckOutcome.FAILED:
                await self._commit(active, *self._on_failed_check(current, verdict, wall), now)
            elif verdict.outcome is CheckOutcome.SPLIT_MISMATCH and current.state is _RUNNING:
                draft, decision = self._decide(
                    dataclasses.replace(current, state=_PAUSED), DecisionKind.PAUSED, CONTROLLER_ACTOR, wall,
                    f"paused at {current.stage_label}: {verdict.summary}; the arms' numbers cannot be trusted "
                    f"while keys do not split as configured — find why (a client pinning an arm, a proxy "
                    f"rewriting keys), then resume, which restarts the split test", verdict)
                await self._commit(active, draft, [decision], now)
            elif verdict.outcome is not CheckOutcome.PASSED:
                draft, decision = self._decide(current, DecisionKind.INCONCLUSIVE, CONTROLLER_ACTOR, wall,
                                               f"{verdict.summary}; {_holding(current)}", verdict)
                await self._commit(active, draft, [decision], now)
            else:
                await self._on_passed_check(active, current, verdict, now, wall)

    def _on_failed_check(self, current: Rollout, verdict: Verdict,
                         wall: float) -> tuple[Rollout, Sequence[Decision]]:
        draft = dataclasses.replace(current, consecutive_failures=current.consecutive_failures + 1,
                                    total_failures=current.total_failures + 1)
        draft, failed = self._decide(draft, DecisionKind.CHECK_FAILED, CONTROLLER_ACTOR, wall,
                                     f"check failed: {verdict.summary}", verdict)
        draft, rolled_back = self._decide(
            dataclasses.replace(draft, state=RolloutState.ROLLED_BACK, weight_percent=0.0),
            DecisionKind.ROLLED_BACK, CONTROLLER_ACTOR, wall,
            f"rolled back at {current.stage_label}: {verdict.summary}; all traffic back to primary "
            f"{current.primary_collection!r}, alias {current.collection!r} untouched",
            verdict,
        )
        return draft, [failed, rolled_back]

    async def _on_passed_check(self, active: _Active, current: Rollout, verdict: Verdict, now: float,
                               wall: float) -> None:
        stage = current.stage
        elapsed_s = current.stage_elapsed_s
        current = dataclasses.replace(current, consecutive_failures=0)
        ready = (current.state is _RUNNING and elapsed_s >= stage.min_duration_s
                 and current.stage_canary_requests >= stage.min_requests)
        if not ready:
            draft, decision = self._decide(current, DecisionKind.CHECK_PASSED, CONTROLLER_ACTOR, wall,
                                           f"check passed: {verdict.summary}; {_holding(current)}", verdict)
            await self._commit(active, draft, [decision], now)
            return
        passed = (f"{current.stage_label} passed after {elapsed_s:.0f} s and {current.stage_canary_requests} "
                  f"canary requests with no test rejected")
        draft, checked = self._decide(current, DecisionKind.CHECK_PASSED, CONTROLLER_ACTOR, wall,
                                      f"check passed: {verdict.summary}", verdict)
        if current.current_stage + 1 < len(current.stages):
            following = current.stages[current.current_stage + 1]
            draft = dataclasses.replace(draft, current_stage=current.current_stage + 1,
                                        weight_percent=following.weight_percent, stage_elapsed_s=0.0,
                                        stage_clean_since_s=0.0, stage_canary_requests=0, evidence=None)
            active.new_stage(draft)
            draft = dataclasses.replace(draft, evidence=active.evidence.to_json(),
                                        baseline=active.baseline.to_json())
            draft, moved = self._decide(
                draft, DecisionKind.ADVANCED, CONTROLLER_ACTOR, wall,
                f"{passed}; weight {stage.weight_percent:g}% to {following.weight_percent:g}% "
                f"({draft.stage_label}); its tests start afresh", verdict)
            await self._commit(active, draft, [checked, moved], now, reset_progress=True)
        elif not current.auto_promote:
            draft, awaiting = self._decide(
                dataclasses.replace(draft, state=_AWAITING), DecisionKind.AWAITING_PROMOTION, CONTROLLER_ACTOR,
                wall, f"{passed}, the last one; traffic stays at {stage.weight_percent:g}% until PromoteRollout "
                      f"and the tests keep watching", verdict)
            await self._commit(active, draft, [checked, awaiting], now)
        else:
            try:
                await self._point_alias_at_canary(current)
            except SearchgwError as exc:
                draft, checked = self._decide(
                    current, DecisionKind.CHECK_PASSED, CONTROLLER_ACTOR, wall,
                    f"check passed: {verdict.summary}; {passed}, the last one, but the automatic promotion "
                    f"failed ({exc.message}); it is retried at the next passed check", verdict)
                await self._commit(active, draft, [checked], now)
                return
            draft, promoted = self._after_switch(active, draft, CONTROLLER_ACTOR, wall,
                                                 f"{passed}, the last one; {_promotion_effect(current)}", verdict)
            await self._commit(active, draft, [checked, promoted], now, reset_progress=True, switched=True)

    # -- transitions ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transition(self, name: str, action: str,
                          allowed: Collection[RolloutState]) -> AsyncIterator[_Active]:
        """Hold the rollout's lock while its state is one `action` is allowed in."""
        rollout = self._find(name)
        active = self._active.get(name)
        if active is None:
            raise _illegal(rollout, action, allowed)
        async with active.lock:
            if active.rollout.state not in allowed:
                raise _illegal(active.rollout, action, allowed)
            yield active

    def _decide(self, rollout: Rollout, kind: DecisionKind, actor: str, wall: float, reason: str,
                verdict: Verdict | None = None) -> tuple[Rollout, Decision]:
        """`rollout` with one more decision, made at its current stage and weight.

        A routine decision that repeats the last one (same kind, stage and state) replaces it, with
        its count raised and its first time kept: history stays readable when checks run for days.
        """
        last = rollout.decisions[-1] if rollout.decisions else None
        folds = (last is not None and kind in ROUTINE_DECISIONS and last.kind is kind
                 and last.stage == rollout.current_stage and last.weight_percent == rollout.weight_percent)
        folded = last if folds else None  # the decision this one replaces, when it folds
        decision = Decision(
            time=wall, kind=kind, reason=reason, stage=rollout.current_stage, weight_percent=rollout.weight_percent,
            primary=verdict.primary if verdict else None, canary=verdict.canary if verdict else None,
            actor=actor or ANONYMOUS_ACTOR, tests=verdict.tests if verdict else (),
            seq=(last.seq if folds else last.seq + 1) if last is not None else 1,
            repeats=folded.repeats + 1 if folded is not None else 1,
            first_time=(folded.first_time or folded.time) if folded is not None else wall,
        )
        decisions = (*rollout.decisions[:-1], decision) if folds else (*rollout.decisions, decision)
        routine = [d for d in decisions if d.kind in ROUTINE_DECISIONS]
        if len(routine) > self._max_routine_decisions:
            dropped = {d.seq for d in routine[:len(routine) - self._max_routine_decisions]}
            decisions = tuple(d for d in decisions if d.seq not in dropped)
        return dataclasses.replace(rollout, decisions=decisions, update_time=wall), decision

    async def _commit(self, active: _Active, draft: Rollout, decisions: Sequence[Decision], now: float, *,
                      reset_progress: bool = False, switched: bool = False) -> Rollout:
        """Make `draft` current, route by it, announce `decisions`, and save it. Call with the lock held.

        A draft that keeps the rollout active is saved first: if the store fails nothing changes and the
        error propagates (the stage and weight stay where they were, which is safe). A draft that ends
        the rollout takes effect first, whatever the store does: an abort or a rollback must stop the
        canary's traffic even while the disk is full, and a promotion whose alias has switched has
        happened. Its save is tried at once and, if the store fails, on every tick until it succeeds.
        `switched`: the alias has switched for this draft (into BAKING), so it is saved like an ending one.
        """
        ending = not draft.state.is_active or switched
        if not ending:
            await self._store.save(draft)
            self._unsaved.pop(draft.name, None)  # the store holds a newer state than the one waiting
        previous = active.rollout
        active.rollout = draft
        active.elapsed_base = draft.stage_elapsed_s
        active.running_since = now if draft.state in _CLOCKED else None
        if reset_progress:
            active.canary_requests = 0
        self._rollouts[draft.name] = draft
        if not draft.state.is_active:
            del self._active[draft.name]
        if (previous.state, previous.weight_percent) != (draft.state, draft.weight_percent):
            self._publish_routes()
        if ending:
            self._unsaved[draft.name] = draft
            await self._save_unsaved()
        self._announce(active, draft, decisions)
        return draft

    async def _save_unsaved(self) -> None:
        """Save the ended rollouts the store has not taken yet; keep those it still refuses."""
        for name, rollout in list(self._unsaved.items()):
            try:
                await self._store.save(rollout)
            except Exception as exc:
                log.warning("rollout %s is %s in routing but not saved yet (%s); the save is retried every tick",
                            name, rollout.state.name, exc, extra={"rollout": name, "state": rollout.state.name})
                return  # the store is down: the others would fail the same way
            if self._unsaved.get(name) is rollout:
                del self._unsaved[name]

    async def _to_completion(self, work: Coroutine[Any, Any, ResultT]) -> ResultT:
        """Run a transition to its end even if the caller stops waiting (a deadline, a dropped client).

        Cancelled half-way, a promotion could leave the alias on the canary with the rollout still
        RUNNING, and a save could land in the store but not in memory. The caller gets its
        cancellation; the transition finishes in its own task, and `stop()` waits for it.
        """
        task = asyncio.ensure_future(work)
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_log_unobserved_failure)
            raise

    async def _point_alias_at_canary(self, rollout: Rollout) -> None:
        await self._point_alias(rollout, rollout.canary_collection, "at", "the rollout is unchanged")

    async def _point_alias(self, rollout: Rollout, target: str, how: str, outcome: str) -> None:
        """Point the rollout's alias at `target`; an engine failure that is not a domain error is
        Unavailable, saying what became of the rollout."""
        try:
            await self._switch_alias(rollout.collection, target)
        except SearchgwError:
            raise
        except Exception as exc:
            raise Unavailable(f"could not point {rollout.collection!r} {how} {target!r} ({exc}); {outcome}") from exc

    async def _finish_interrupted_promotion(self, active: _Active) -> None:
        rollout = active.rollout
        try:
            target = await self._resolve_alias(rollout.collection)
        except Exception:
            log.warning("could not read the alias of an active rollout at start-up", exc_info=True,
                        extra={"rollout": rollout.name, "collection": rollout.collection})
            return
        if rollout.state is _BAKING:
            if target == rollout.primary_collection:
                await self._finish_interrupted_undo(active)
            return
        if target != rollout.canary_collection:
            return
        async with active.lock:
            now = self._clock()
            draft, decision = self._after_switch(
                active, active.live(now), CONTROLLER_ACTOR, self._wall_clock(),
                f"{rollout.collection!r} already pointed at the canary {rollout.canary_collection!r} at start-up "
                f"(a promotion was not saved before the gateway stopped); recorded as promoted")
            await self._commit(active, draft, [decision], now, reset_progress=True, switched=True)

    # -- after promotion: bake, undo, grace period ------------------------------------------------------

    async def undo(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        """Switch a BAKING rollout's alias back to the old collection and end it (UNDONE).

        No acknowledged write is lost: every write of the bake reached both collections. After the bake
        (PROMOTED) it is FailedPrecondition: writes since then reached the new collection only. If the
        alias switch fails the rollout is unchanged (still BAKING) and the error propagates.
        """
        return await self._to_completion(self._undo(name, reason, actor))

    async def _undo(self, name: str, reason: str = "", actor: str = "") -> Rollout:
        check_reason(reason)
        async with self._transition(name, "undo", {_BAKING}) as active:
            await self._switch_alias_back(active.rollout)
            now = self._clock()
            live = active.live(now)
            draft, decision = self._undone(
                live, actor, self._wall_clock(),
                _with_reason(f"undone after {live.stage_elapsed_s:.0f}/{live.promotion.bake_s:.0f} s of the bake: "
                             f"{_undo_effect(live)}", reason))
            return await self._commit(active, draft, [decision], now)

    def _after_switch(self, active: _Active, current: Rollout, actor: str, wall: float, text: str,
                      verdict: Verdict | None = None, *, reason: str = "") -> tuple[Rollout, Decision]:
        """`current` once its alias points at the canary: BAKING with the bake's evidence (the stage's
        tests afresh at 100 %, primary's calls so far the baseline), or PROMOTED when the policy bakes 0 s."""
        bake_s = current.promotion.bake_s
        if bake_s <= 0:
            return self._decide(
                dataclasses.replace(current, state=RolloutState.PROMOTED, weight_percent=100.0, bake_end_time=wall),
                DecisionKind.PROMOTED, actor, wall, _with_reason(f"{text}; no bake (bake_duration 0)", reason), verdict)
        now = self._clock()
        active.fold(now)
        draft = dataclasses.replace(current, state=_BAKING, weight_percent=100.0, stage_elapsed_s=0.0,
                                    stage_clean_since_s=0.0, stage_canary_requests=0, evidence=None,
                                    bake_start_time=wall, bake_end_time=0.0)
        active.new_stage(draft)
        draft = dataclasses.replace(draft, evidence=active.evidence.to_json(), baseline=active.baseline.to_json())
        return self._decide(
            draft, DecisionKind.BAKE_STARTED, actor, wall,
            _with_reason(f"{text}; baking for {bake_s:.0f} s: writes still reach both {current.canary_collection!r} "
                         f"and {current.primary_collection!r}, the new collection is judged against the old one's "
                         f"baseline ({active.baseline.calls} analysed calls), UndoRollout switches back", reason),
            verdict)

    def _undone(self, current: Rollout, actor: str, wall: float, text: str,
                verdict: Verdict | None = None) -> tuple[Rollout, Decision]:
        return self._decide(dataclasses.replace(current, state=RolloutState.UNDONE, weight_percent=0.0,
                                                bake_end_time=wall),
                            DecisionKind.UNDONE, actor, wall, text, verdict)

    async def _complete_bake(self, active: _Active, current: Rollout, now: float, wall: float, actor: str,
                             text: str, verdict: Verdict | None = None) -> Rollout:
        draft, completed = self._decide(
            dataclasses.replace(current, state=RolloutState.PROMOTED, weight_percent=100.0, bake_end_time=wall),
            DecisionKind.BAKE_COMPLETED, actor, wall, text, verdict)
        return await self._commit(active, draft, [completed], now)

    async def _check_bake(self, active: _Active, current: Rollout, verdict: Verdict, now: float,
                          wall: float) -> None:
        """A check during the bake: a rejected test undoes the promotion; the bake's end completes it."""
        bake_s = current.promotion.bake_s
        progress = f"baking: {current.stage_elapsed_s:.0f}/{bake_s:.0f} s"
        if verdict.outcome is CheckOutcome.FAILED:
            draft = dataclasses.replace(current, consecutive_failures=current.consecutive_failures + 1,
                                        total_failures=current.total_failures + 1)
            try:
                await self._switch_alias_back(current)
            except SearchgwError as exc:
                draft, failed = self._decide(
                    draft, DecisionKind.CHECK_FAILED, CONTROLLER_ACTOR, wall,
                    f"check failed during the bake: {verdict.summary}; switching {current.collection!r} back "
                    f"failed ({exc.message}); the undo is tried again at the next check", verdict)
                await self._commit(active, draft, [failed], now)
                return
            draft, failed = self._decide(draft, DecisionKind.CHECK_FAILED, CONTROLLER_ACTOR, wall,
                                         f"check failed during the bake: {verdict.summary}", verdict)
            draft, undone = self._undone(
                draft, CONTROLLER_ACTOR, wall,
                f"undone after {current.stage_elapsed_s:.0f}/{bake_s:.0f} s of the bake: {verdict.summary}; "
                f"{_undo_effect(current)}", verdict)
            await self._commit(active, draft, [failed, undone], now)
        elif current.stage_elapsed_s >= bake_s:
            await self._complete_bake(
                active, dataclasses.replace(current, consecutive_failures=0), now, wall, CONTROLLER_ACTOR,
                f"bake completed after {current.stage_elapsed_s:.0f} s with no test rejected ({verdict.summary}); "
                f"{_bake_end_effect(current)}", verdict)
        else:
            kind = DecisionKind.CHECK_PASSED if verdict.outcome is CheckOutcome.PASSED else DecisionKind.INCONCLUSIVE
            draft, decision = self._decide(current, kind, CONTROLLER_ACTOR, wall, f"{verdict.summary}; {progress}",
                                           verdict)
            await self._commit(active, draft, [decision], now)

    async def _switch_alias_back(self, rollout: Rollout) -> None:
        await self._point_alias(rollout, rollout.primary_collection, "back at", "the rollout is still BAKING")

    async def _finish_interrupted_undo(self, active: _Active) -> None:
        async with active.lock:
            now = self._clock()
            live = active.live(now)
            draft, decision = self._undone(
                live, CONTROLLER_ACTOR, self._wall_clock(),
                f"{live.collection!r} already pointed back at {live.primary_collection!r} at start-up (an undo "
                f"was not saved before the gateway stopped); recorded as undone: {_undo_effect(live)}")
            await self._commit(active, draft, [decision], now)

    async def _end_grace_periods(self) -> None:
        """Apply the policy's action to the old collection of every promotion whose grace period is over."""
        wall = self._wall_clock()
        for rollout in list(self._rollouts.values()):
            if (rollout.state is not RolloutState.PROMOTED or not rollout.bake_end_time
                    or rollout.old_collection_time or wall < rollout.bake_end_time + rollout.promotion.grace_s):
                continue
            try:
                async with self._create_lock:  # no rollout starts on the old collection while it is deleted
                    await self._to_completion(self._end_grace_period(rollout.name, wall))
            except Exception:
                log.exception("could not end the grace period of a promotion", extra={"rollout": rollout.name})

    async def _end_grace_period(self, name: str, wall: float) -> None:
        rollout = self._rollouts[name]
        if rollout.old_collection_time:
            return
        old = rollout.primary_collection
        ended = (f"the grace period of {rollout.promotion.grace_s:.0f} s after the bake ended; old collection "
                 f"{old!r}")
        kind = DecisionKind.OLD_COLLECTION_KEPT
        if rollout.promotion.old_collection_action is not OldCollectionAction.DELETE:
            text = f"{ended} kept as the policy says (old_collection_action KEEP); delete it by hand when done"
        elif (blockers := await self._old_collection_users(old)):
            text = f"{ended} kept, not deleted as the policy says: {blockers}"
        else:
            assert self._delete_collection is not None  # _old_collection_users says so otherwise
            try:
                await self._delete_collection(old)
                kind, text = DecisionKind.OLD_COLLECTION_DELETED, f"{ended} deleted as the policy says"
            except NotFound:
                kind, text = DecisionKind.OLD_COLLECTION_DELETED, f"{ended} was already gone"
            except FailedPrecondition as exc:
                text = f"{ended} kept, not deleted as the policy says: {exc.message}"
            # Unavailable and the like propagate: the deletion is tried again on the next tick.
        draft, decision = self._decide(dataclasses.replace(rollout, old_collection_time=wall), kind,
                                       CONTROLLER_ACTOR, wall, text)
        self._rollouts[name] = draft
        self._unsaved[name] = draft
        await self._save_unsaved()
        _log_decision(draft, decision)
        if self._observer is not None:
            try:
                self._observer.on_decision(draft, decision)
            except Exception:
                log.exception("rollout observer failed", extra={"rollout": name})

    async def _old_collection_users(self, old: str) -> str:
        """Why `old` must not be deleted ("" when it may): an alias points at it, an active rollout uses it."""
        if self._delete_collection is None or self._list_aliases is None:
            return "this controller was given no way to delete collections"
        using = sorted(a.rollout.name for a in self._active.values()
                       if old in (a.rollout.primary_collection, a.rollout.canary_collection))
        if using:
            return f"active rollout(s) {', '.join(using)} use it"
        pointing = aliases_of(old, await self._list_aliases())
        if pointing:
            return f"alias(es) {', '.join(pointing)} point at it"
        return ""

    # -- publishing ----------------------------------------------------------------------------------

    def _publish_routes(self) -> None:
        self._router.replace({
            r.collection: RouteTable(rollout=r.name, salt=r.salt, primary=r.primary_collection,
                                     canary=r.canary_collection, weight_bps=r.weight_bps)
            for r in (active.rollout for active in self._active.values())
        })

    def _announce(self, active: _Active, rollout: Rollout, decisions: Sequence[Decision]) -> None:
        for decision in decisions:
            _log_decision(rollout, decision)
            for queue in active.watchers:
                queue.put_nowait((rollout, decision))
            if self._observer is not None:
                try:
                    self._observer.on_decision(rollout, decision)
                except Exception:
                    log.exception("rollout observer failed", extra={"rollout": rollout.name})
        self._notify_change(rollout)
        if not rollout.state.is_active:
            for queue in active.watchers:
                queue.put_nowait(None)

    def _notify_change(self, rollout: Rollout) -> None:
        if self._observer is not None:
            try:
                self._observer.on_change(rollout)
            except Exception:
                log.exception("rollout observer failed", extra={"rollout": rollout.name})

    # -- helpers ---------------------------------------------------------------------------------------

    def _find(self, name: str) -> Rollout:
        rollout = self._rollouts.get(name)
        if rollout is None:
            raise NotFound(f"no rollout named {name!r}", reason="ROLLOUT_NOT_FOUND", metadata={"rollout": name})
        return rollout

    def _view(self, rollout: Rollout) -> Rollout:
        """`rollout` with live stage progress when it is active."""
        active = self._active.get(rollout.name)
        return rollout if active is None else active.live(self._clock())


class _BackfillStopped(Exception):
    """The rollout left PREPARING (aborted) while its backfill ran: the backfill ends."""


def _log_unobserved_failure(task: asyncio.Task[Any]) -> None:
    """Log the failure of a transition whose caller had already stopped waiting for it."""
    if not task.cancelled() and task.exception() is not None:
        log.error("a rollout transition failed after its caller went away", exc_info=task.exception())


def _illegal(rollout: Rollout, action: str, allowed: Collection[RolloutState]) -> FailedPrecondition:
    if action == "undo" and rollout.state is RolloutState.PROMOTED and rollout.bake_end_time:
        return FailedPrecondition(
            f"cannot undo rollout {rollout.name!r}: its bake is over, and writes since then reached only "
            f"{rollout.canary_collection!r}, not {rollout.primary_collection!r}; switching {rollout.collection!r} "
            f"back would lose them (undo is possible only while BAKING; repoint the alias by hand if you accept "
            f"that loss)", reason="BAKE_OVER", metadata={"state": rollout.state.name})
    if action == "abort" and rollout.state is RolloutState.BAKING:
        return FailedPrecondition(
            f"cannot abort rollout {rollout.name!r}: it is BAKING (the alias already points at the canary); "
            f"undo it to switch back, or promote it to end the bake now",
            reason="ILLEGAL_TRANSITION", metadata={"state": rollout.state.name})
    needed = " or ".join(sorted(state.name for state in allowed))
    return FailedPrecondition(f"cannot {action} rollout {rollout.name!r}: it is {rollout.state.name}; "
                              f"{action} needs {needed}",
                              reason="ILLEGAL_TRANSITION", metadata={"state": rollout.state.name})


def _holding(rollout: Rollout) -> str:
    """Why the stage does not move (yet), with the progress numbers."""
    if rollout.state is _PAUSED:
        return f"paused at {rollout.stage_label}: the stage clock is frozen"
    if rollout.state is _AWAITING:
        return f"awaiting promotion at {rollout.stage_label}"
    stage = rollout.stage
    return (f"{rollout.stage_label} holds: {rollout.stage_elapsed_s:.0f}/{stage.min_duration_s:.0f} s, "
            f"{rollout.stage_canary_requests}/{stage.min_requests} canary requests")


def _promotion_effect(rollout: Rollout) -> str:
    return (f"{rollout.collection!r} now points at the canary {rollout.canary_collection!r} "
            f"(the old collection {rollout.primary_collection!r} is kept)")


def _undo_effect(rollout: Rollout) -> str:
    return (f"{rollout.collection!r} points back at {rollout.primary_collection!r}, which received every write of "
            f"the bake; the canary {rollout.canary_collection!r} is kept")


def _bake_end_effect(rollout: Rollout) -> str:
    return (f"writes now reach only {rollout.canary_collection!r}; the old collection {rollout.primary_collection!r} "
            f"waits {rollout.promotion.grace_s:.0f} s, then is "
            f"{'deleted' if rollout.promotion.old_collection_action is OldCollectionAction.DELETE else 'kept'}")


def _with_reason(text: str, reason: str) -> str:
    return f"{text}: {reason}" if reason else text


def _log_decision(rollout: Rollout, decision: Decision) -> None:
    extra: dict[str, object] = {
        "rollout": rollout.name, "collection": rollout.collection, "decision": decision.kind.name,
        "state": rollout.state.name, "stage": decision.stage, "weight_percent": decision.weight_percent,
        "actor": decision.actor, "consecutive_failures": rollout.consecutive_failures,
        "total_failures": rollout.total_failures,
    }
    for arm, stats in (("primary", decision.primary), ("canary", decision.canary)):
        if stats is not None:
            extra[f"{arm}_requests"] = stats.requests
            extra[f"{arm}_errors"] = stats.errors
            extra[f"{arm}_error_rate"] = stats.error_rate
            extra[f"{arm}_latency_s"] = stats.latency_s
    for test in decision.tests:
        name = test.kind.name.lower()
        extra[f"{name}_outcome"] = test.outcome.name
        extra[f"{name}_e_value"] = test.e_value
        extra[f"{name}_p_value"] = test.p_value
        extra[f"{name}_estimate"] = test.estimate
        extra[f"{name}_interval"] = [test.lower, test.upper]
        if test.kind is TestKind.QUALITY_OVERLAP:  # shadow comparisons, and how many were below the minimum
            extra["quality_comparisons"] = test.canary_calls
            extra["quality_below"] = test.canary_events
    if decision.repeats > 1:
        extra["repeats"] = decision.repeats
    level = (logging.WARNING if decision.kind in (DecisionKind.CHECK_FAILED, DecisionKind.ROLLED_BACK,
                                                  DecisionKind.UNDONE) else logging.INFO)
    log.log(level, "rollout %s %s: %s", rollout.name, decision.kind.name.lower(), decision.reason, extra=extra)


def _newest_first(rollout: Rollout) -> tuple[float, str]:
    return (-rollout.create_time, rollout.name)
