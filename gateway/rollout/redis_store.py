"""The shared control plane on Redis: rollout state, leadership and counts of several gateway replicas.

Chosen with `--state redis://host:port/db` (or `rediss://`; the password from the URL). Nothing here
is home-made consensus: Redis is the one place state lives, and every rule below is one atomic Redis
command or Lua script.

Keys (prefix `searchgw:`)
    rollout:{name}          hash: body (the rollout and its kept decisions, JSON), version, folded
    rollouts                set of rollout names
    active:{collection}     the name of the collection's active rollout (set and cleared by the save that
                            starts or ends it), so two replicas cannot both start one on a collection
    version                 counter, raised by every save (what followers poll)
    epoch                   the fencing epoch, raised (INCR) by every new leader
    leader                  the lease: "{epoch} {holder}", SET NX PX, renewed by its holder only
    changes                 pub/sub channel: "{name} {version}" after every save
    counts:{name}:{second}  hash of one wall-clock second's counts of every follower (HINCRBY), expiring

State: compare-and-set on a version
    `save(rollout)` writes only if the stored version is the one this replica last read or wrote
    for that rollout (`RolloutChanged` otherwise), so of two writers from the same version one wins
    and the other learns the rollout moved. A decision of the controller (actor `controller`) is also
    fenced: the write carries the epoch of the leadership it was taken under, and the script refuses
    it when a newer leader has been elected since (`StaleLeader`) — a paused or partitioned old leader
    cannot overwrite a newer decision even when it has the current version. A person's decision
    (pause, resume, promote, abort at any replica) is guarded by the version alone: it is made
    against the state that replica shows, and cannot overwrite anything it has not seen.

Leadership (`RedisLeadership`)
    One replica holds the lease `leader` (SET NX PX `lease_s`, renewed every third of it by a Lua
    script that extends it only for its holder). Taking it raises the fencing epoch in the same
    script. A holder counts itself leader until `lease_s` minus a margin after the renewal *started*
    by its own clock, so it stops deciding before Redis can hand the lease to another; when Redis is
    unreachable nobody can renew or take it, so no decision is taken. `resign()` on shutdown lets
    another replica lead at once.

Following (`RedisStateFeed`)
    Every replica applies every saved change to its routing: it learns of a save at once from the
    `changes` channel, and reads the `version` counter every `poll_s` (pub/sub drops messages while
    a connection is down) to fetch the rollouts whose version moved.

Counts (`RedisCounts`)
    A follower adds its complete seconds to `counts:{name}:{wall second}` (one pipelined HINCRBY
    batch per tick, with an expiry), and the leader reads every second up to `lag_s` ago, merges
    it into its own counts and folds them into the same `StageEvidence`: the analysis sees all
    traffic. The last second folded is saved with the rollout (`folded`), so a new leader goes on
    from there. A second is keyed by wall time (the controller's clock is monotonic and per process).

Durability: see docs/durability.md (AOF with appendfsync always or everysec).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from searchgw.errors import AlreadyExists, FailedPrecondition, Unavailable
from searchgw.gateway.rollout.analysis import ArmSlice
from searchgw.gateway.rollout.cluster import Seconds
from searchgw.gateway.rollout.model import CONTROLLER_ACTOR, Rollout
from searchgw.gateway.rollout.store import (
    _decision_from_json,
    _decision_to_json,
    _rollout_from_json,
    _rollout_to_json,
)

log = logging.getLogger("searchgw.gateway.rollout.redis")

DEFAULT_PREFIX = "searchgw:"
DEFAULT_LEASE_S = 5.0
DEFAULT_POLL_S = 0.5
#: Seconds a follower's counts may take to reach Redis before the leader folds that second.
DEFAULT_LAG_S = 2
#: How long a second's counts are kept in Redis (the leader reads them within a few seconds).
COUNTS_TTL_S = 120
#: The share of the lease a holder uses before it stops counting itself leader.
_LEASE_MARGIN = 0.8

_SAVE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[3]) then return {-1, current} end
local epoch = tonumber(ARGV[4])
if epoch >= 0 then
  local newest = tonumber(redis.call('GET', KEYS[4]) or '0')
  if epoch < newest then return {-2, newest} end
end
if ARGV[7] == '1' then
  local holder = redis.call('GET', KEYS[5])
  if holder and holder ~= ARGV[1] then return {-3, holder} end
end
local version = current + 1
if ARGV[7] == '1' then
  redis.call('SET', KEYS[5], ARGV[1])
elseif redis.call('GET', KEYS[5]) == ARGV[1] then
  redis.call('DEL', KEYS[5])
end
redis.call('HSET', KEYS[1], 'body', ARGV[2], 'version', version)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'folded', ARGV[5]) end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[6], ARGV[1] .. ' ' .. version)
return {version, 0}
"""

_ACQUIRE = """
if redis.call('SET', KEYS[1], 'pending', 'NX', 'PX', ARGV[2]) then
  local epoch = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], epoch .. ' ' .. ARGV[1], 'PX', ARGV[2])
  return epoch
end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RolloutChanged(FailedPrecondition):
    """The rollout was saved by another writer since this replica read it (compare-and-set lost)."""


class StaleLeader(FailedPrecondition):
    """A controller decision taken under a leadership that has since passed to another replica."""


def connect(url: str, *, timeout_s: float = 1.0) -> aioredis.Redis:
    """A client for `redis://` or `rediss://` URLs (password and db from the URL). Calls fail fast
    (`timeout_s`, one immediate retry — on a fresh connection after Redis restarted): a replica must
    not hang on a dead Redis, it keeps serving without it."""
    return aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                   retry=Retry(NoBackoff(), 1), decode_responses=True)


def _unavailable(what: str, exc: BaseException) -> Unavailable:
    return Unavailable(f"the shared rollout state (Redis) is unreachable: {what} failed ({exc or type(exc).__name__})",
                       reason="STATE_STORE_UNAVAILABLE")


class RedisRolloutStore:
    """A RolloutStore in Redis with compare-and-set and fencing (see the module docstring).

    `fencing_epoch()` is the epoch of the leadership this replica holds or last held (0: never).
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str = DEFAULT_PREFIX,
                 fencing_epoch: Callable[[], int] = lambda: 0) -> None:
        self.client = client
        self.prefix = prefix
        self._fencing_epoch = fencing_epoch
        #: The version of each rollout as this replica last read or wrote it.
        self._versions: dict[str, int] = {}
        #: The last second folded into each rollout's evidence, saved with its next save.
        self._folded: dict[str, int] = {}
        self._save_script = client.register_script(_SAVE)
        self.up: bool | None = None

    # -- keys --------------------------------------------------------------------------------------

    def rollout_key(self, name: str) -> str:
        return f"{self.prefix}rollout:{name}"

    @property
    def channel(self) -> str:
        return f"{self.prefix}changes"

    @property
    def version_key(self) -> str:
        return f"{self.prefix}version"

    # -- RolloutStore ------------------------------------------------------------------------------

    async def save(self, rollout: Rollout) -> None:
        name = rollout.name
        expected = self._versions.get(name, 0)
        fenced = bool(rollout.decisions) and rollout.decisions[-1].actor == CONTROLLER_ACTOR
        epoch = self._fencing_epoch() if fenced else -1
        if fenced and epoch <= 0:
            raise StaleLeader(f"rollout {name!r}: this replica is not the leader; the controller's decision "
                              f"is not saved", reason="NOT_LEADER")
        folded = self._folded.get(name)
        body = json.dumps({"rollout": _rollout_to_json(rollout),
                           "decisions": [_decision_to_json(d) for d in rollout.decisions]})
        try:
            version, detail = await self._save_script(
                keys=[self.rollout_key(name), f"{self.prefix}rollouts", self.version_key, f"{self.prefix}epoch",
                      f"{self.prefix}active:{rollout.collection}"],
                args=[name, body, expected, epoch, "" if folded is None else folded, self.channel,
                      "1" if rollout.state.is_active else "0"])
        except (RedisError, OSError) as exc:
            self.up = False
            raise _unavailable(f"saving rollout {name!r}", exc) from exc
        self.up = True
        if version == -3:
            raise AlreadyExists(
                f"collection {rollout.collection!r} already has an active rollout {detail!r} (started at another "
                f"replica); promote or abort it first", reason="ACTIVE_ROLLOUT_EXISTS",
                metadata={"collection": rollout.collection, "rollout": str(detail)})
        if version == -1 and expected == 0:
            raise AlreadyExists(f"a rollout named {name!r} already exists (created at another replica); pick "
                                f"another name", reason="ROLLOUT_EXISTS", metadata={"rollout": name})
        if version == -1:
            raise RolloutChanged(f"rollout {name!r} was changed at another replica (version {detail}, this replica "
                                 f"had {expected}); read it again and retry", reason="ROLLOUT_CHANGED",
                                 metadata={"rollout": name})
        if version == -2:
            raise StaleLeader(f"rollout {name!r}: the controller's decision was taken under leadership epoch "
                              f"{epoch}, but epoch {detail} has been elected since; not saved",
                              reason="STALE_LEADER", metadata={"rollout": name})
        self._versions[name] = int(version)

    async def load_all(self) -> list[Rollout]:
        try:
            names = sorted(str(n) for n in await self.client.smembers(f"{self.prefix}rollouts"))
            found = [found for found in await self._read_many(names) if found is not None]
        except (RedisError, OSError) as exc:
            self.up = False
            raise _unavailable("loading the rollouts", exc) from exc
        self.up = True
        for rollout, version, folded in found:
            self._versions[rollout.name] = version
            if folded is not None:
                self._folded[rollout.name] = folded
        rollouts = [rollout for rollout, _, _ in found]
        rollouts.sort(key=lambda r: (r.create_time, r.name))
        return rollouts

    async def get(self, name: str) -> Rollout | None:
        found = await self.read(name)
        return None if found is None else found[0]

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()

    # -- following ---------------------------------------------------------------------------------

    async def read(self, name: str) -> tuple[Rollout, int] | None:
        """The stored rollout and its version, without adopting the version (see `adopted`)."""
        try:
            found = (await self._read_many([name]))[0]
        except (RedisError, OSError) as exc:
            self.up = False
            raise _unavailable(f"reading rollout {name!r}", exc) from exc
        self.up = True
        if found is None:
            return None
        rollout, version, folded = found
        if folded is not None:  # where a leader after this one goes on gathering counts from
            self._folded[name] = max(folded, self._folded.get(name, folded))
        return rollout, version

    def known_version(self, name: str) -> int:
        return self._versions.get(name, 0)

    def adopted(self, name: str, version: int) -> None:
        """This replica now holds `version` of `name` in memory: its next save builds on it."""
        if version > self._versions.get(name, 0):
            self._versions[name] = version

    async def versions(self) -> tuple[int, dict[str, int]]:
        """The global change counter and every rollout's version."""
        try:
            names = sorted(str(n) for n in await self.client.smembers(f"{self.prefix}rollouts"))
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.get(self.version_key)
                for name in names:
                    pipe.hget(self.rollout_key(name), "version")
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            self.up = False
            raise _unavailable("reading the rollout versions", exc) from exc
        self.up = True
        return int(replies[0] or 0), {name: int(v or 0) for name, v in zip(names, replies[1:], strict=True)}

    async def change_counter(self) -> int:
        try:
            value = await self.client.get(self.version_key)
        except (RedisError, OSError) as exc:
            self.up = False
            raise _unavailable("reading the change counter", exc) from exc
        self.up = True
        return int(value or 0)

    # -- counts bookkeeping ------------------------------------------------------------------------

    def folded_through(self, name: str) -> int | None:
        return self._folded.get(name)

    def note_folded(self, name: str, second: int) -> None:
        """The evidence now holds every second up to `second`; saved with the rollout's next save."""
        self._folded[name] = second

    async def _read_many(self, names: list[str]) -> list[tuple[Rollout, int, int | None] | None]:
        async with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.rollout_key(name))
            replies = await pipe.execute()
        found: list[tuple[Rollout, int, int | None] | None] = []
        for reply in replies:
            if not reply:
                found.append(None)
                continue
            data = json.loads(reply["body"])
            decisions = tuple(_decision_from_json(d) for d in data["decisions"])
            folded = reply.get("folded")
            found.append((_rollout_from_json(data["rollout"], decisions), int(reply["version"]),
                          int(folded) if folded else None))
        return found


class RedisLeadership:
    """One leader at a time: a lease with a fencing epoch (see the module docstring)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = DEFAULT_PREFIX, holder: str = "",
                 lease_s: float = DEFAULT_LEASE_S, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 on_change: Callable[[bool, int], None] | None = None) -> None:
        if not math.isfinite(lease_s) or lease_s <= 0:
            raise ValueError("lease_s must be a positive number of seconds")
        self.client = client
        self.holder = holder or secrets.token_hex(6)
        self.lease_s = lease_s
        self._key = f"{prefix}leader"
        self._epoch_key = f"{prefix}epoch"
        self._clock = clock
        self._sleep = sleep
        self._on_change = on_change
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        #: The epoch of the leadership held or last held (0: never); writes are fenced with it.
        self.epoch = 0
        self._valid_until = -math.inf
        self._was_leader = False

    @property
    def is_leader(self) -> bool:
        return self.epoch > 0 and self._clock() < self._valid_until

    @property
    def _value(self) -> str:
        return f"{self.epoch} {self.holder}"

    async def step(self) -> bool:
        """Renew the lease if held, else try to take it. Returns whether this replica leads now."""
        started = self._clock()
        ttl_ms = str(int(self.lease_s * 1000))
        try:
            if self.epoch > 0:  # extended only while Redis still holds this holder's lease
                renewed = await self._renew(keys=[self._key], args=[self._value, ttl_ms])
                if renewed:
                    self._valid_until = started + self.lease_s * _LEASE_MARGIN
                elif self._valid_until > -math.inf:
                    self._valid_until = -math.inf
                    log.warning("lost the rollout leadership (epoch %d): the lease is held by another replica",
                                self.epoch, extra={"epoch": self.epoch, "holder": self.holder})
            if not self.is_leader:
                epoch = int(await self._acquire(keys=[self._key, self._epoch_key], args=[self.holder, ttl_ms]))
                if epoch:
                    self.epoch = epoch
                    self._valid_until = started + self.lease_s * _LEASE_MARGIN
        except (RedisError, OSError) as exc:
            log.debug("leadership step failed: %s", exc)
        self._report()
        return self.is_leader

    async def run(self) -> None:
        """Take or renew the lease every third of it until cancelled."""
        while True:
            await self.step()
            await self._sleep(self.lease_s / 3)

    async def resign(self) -> None:
        """Give the lease up (on shutdown) so another replica leads without waiting for it to expire."""
        if self.epoch > 0:  # released only if Redis still holds this holder's lease
            with contextlib.suppress(RedisError, OSError):
                await self._release(keys=[self._key], args=[self._value])
        self._valid_until = -math.inf
        self._report()

    def _report(self) -> None:
        leading = self.is_leader
        if leading != self._was_leader:
            self._was_leader = leading
            log.info("rollout leadership %s (epoch %d)", "taken" if leading else "given up", self.epoch,
                     extra={"leader": leading, "epoch": self.epoch, "holder": self.holder})
            if self._on_change is not None:
                self._on_change(leading, self.epoch)


class RedisCounts:
    """Every replica's per-second counts in Redis, summed for the leader (see the module docstring).

    `clock` is the controller's (monotonic) clock, `wall_clock` epoch seconds: a controller second
    `s` is the wall second `s + offset`, the offset fixed once per process.
    """

    def __init__(self, client: aioredis.Redis, store: RedisRolloutStore, *, prefix: str = DEFAULT_PREFIX,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 lag_s: int = DEFAULT_LAG_S, ttl_s: int = COUNTS_TTL_S) -> None:
        self.client = client
        self._store = store
        self._prefix = prefix
        self._offset = round(wall_clock() - clock())
        self._lag_s = lag_s
        self._ttl_s = ttl_s
        #: Seconds not yet in Redis (kept while it is down, up to the expiry): (rollout, wall second) → pair.
        self._pending: dict[tuple[str, int], list[ArmSlice]] = {}
        #: The last wall second gathered per rollout, while this replica leads.
        self._through: dict[str, int] = {}

    def _key(self, rollout: str, second: int) -> str:
        return f"{self._prefix}counts:{rollout}:{second}"

    async def share(self, rollout: str, seconds: Seconds, now: float) -> None:
        current = int(now)
        for second in [s for s in seconds if s < current]:
            pair = seconds.pop(second)
            held = self._pending.setdefault((rollout, second + self._offset), [ArmSlice(), ArmSlice()])
            held[0].add(pair[0])
            held[1].add(pair[1])
        self._through.pop(rollout, None)  # a follower: a later leadership starts from the stored mark
        await self.flush(now)

    async def flush(self, now: float) -> None:
        """Send every pending second in one pipeline; keep them while Redis is down (up to the expiry)."""
        if not self._pending:
            return
        oldest = int(now) + self._offset - self._ttl_s
        for stale in [k for k in self._pending if k[1] < oldest]:
            del self._pending[stale]
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for (rollout, second), pair in self._pending.items():
                    hash_key = self._key(rollout, second)
                    for field, count in _fields(pair):
                        pipe.hincrby(hash_key, field, count)
                    pipe.expire(hash_key, self._ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise _unavailable("sharing the rollout counts", exc) from exc
        self._pending.clear()

    async def gather(self, rollout: str, seconds: Seconds, now: float, *, canary_running: bool) -> tuple[float, int]:
        horizon = int(now) + self._offset - self._lag_s  # wall seconds before this one are complete
        start = self._through.get(rollout)
        if start is None:
            folded = self._store.folded_through(rollout)
            # no mark: nothing was folded yet (a mark is saved with every check), so take all there is
            start = folded if folded is not None else horizon - self._ttl_s - 1
        first = max(start + 1, horizon - self._ttl_s)
        wall_seconds = list(range(first, horizon))
        others = 0
        if wall_seconds:
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for second in wall_seconds:
                        pipe.hgetall(self._key(rollout, second))
                    replies = await pipe.execute()
            except (RedisError, OSError) as exc:
                raise _unavailable("gathering the rollout counts", exc) from exc
            for second, reply in zip(wall_seconds, replies, strict=True):
                if not reply:
                    continue
                primary, canary = _pair(reply)
                pair = seconds.setdefault(second - self._offset, [ArmSlice(), ArmSlice()])
                pair[0].add(primary)
                pair[1].add(canary)
                others += canary.calls
        if horizon - 1 > start:
            self._through[rollout] = horizon - 1
            self._store.note_folded(rollout, horizon - 1)
        else:
            self._through[rollout] = start
        return float(horizon - self._offset), others if canary_running else 0


def _fields(pair: list[ArmSlice]) -> Iterable[tuple[str, int]]:
    for arm, counts in zip("pc", pair, strict=True):
        for code, count in counts.codes.items():
            yield f"{arm}:c:{code}", count
        for index, count in counts.latencies.items():
            yield f"{arm}:l:{index}", count
        if counts.new_keys:
            yield f"{arm}:k", counts.new_keys
        for index, count in counts.overlaps.items():  # shadow comparisons (binned, so they sum too)
            yield f"{arm}:o:{index}", count
        for index, count in counts.rbos.items():
            yield f"{arm}:r:{index}", count


def _pair(reply: dict[str, Any]) -> tuple[ArmSlice, ArmSlice]:
    """One second's hash (fields `{p|c}:c:{code}`, `{p|c}:l:{bucket}`, `{p|c}:k`, and the shadow
    comparisons' `{p|c}:o:{bin}` and `{p|c}:r:{bin}`) as [primary, canary]."""
    pair = (ArmSlice(), ArmSlice())
    for field, value in reply.items():
        arm, kind, _, label = field.partition(":")[0], *field.partition(":")[2].partition(":")
        target = pair[0] if arm == "p" else pair[1]
        count = int(value)
        if kind == "c":
            target.codes[label] = target.codes.get(label, 0) + count
        elif kind == "l":
            target.latencies[int(label)] = target.latencies.get(int(label), 0) + count
        elif kind == "k":
            target.new_keys += count
        elif kind == "o":
            target.overlaps[int(label)] = target.overlaps.get(int(label), 0) + count
        elif kind == "r":
            target.rbos[int(label)] = target.rbos.get(int(label), 0) + count
    return pair


Apply = Callable[[Rollout, Callable[[], bool]], Awaitable[bool]]


class RedisStateFeed:
    """Applies every saved change to this replica: pub/sub at once, a version poll every `poll_s`.

    `apply(rollout, still_newer)` makes a stored rollout current here (the controller's `adopt`);
    `still_newer()` tells it, under its lock, whether memory is still older than that version.
    """

    def __init__(self, store: RedisRolloutStore, apply: Apply, *, poll_s: float = DEFAULT_POLL_S,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 on_state: Callable[[bool], None] | None = None) -> None:
        self._store = store
        self._apply = apply
        self._poll_s = poll_s
        self._sleep = sleep
        self._on_state = on_state
        self._seen_counter = -1
        self._lock = asyncio.Lock()

    async def refresh(self, names: Iterable[str] | None = None) -> int:
        """Fetch and apply every rollout whose stored version is newer than this replica's (only
        `names` when given). Returns how many were applied."""
        async with self._lock:
            if names is None:
                counter, versions = await self._store.versions()
                self._seen_counter = counter
            else:
                versions = {name: 1 + self._store.known_version(name) for name in names}
            applied = 0
            for name, version in versions.items():
                if version <= self._store.known_version(name):
                    continue
                found = await self._store.read(name)
                if found is None:
                    continue
                rollout, stored_version = found

                def still_newer(name: str = name, stored_version: int = stored_version) -> bool:
                    return stored_version > self._store.known_version(name)

                if await self._apply(rollout, still_newer):
                    self._store.adopted(name, stored_version)
                    applied += 1
            return applied

    async def poll_once(self) -> None:
        """Read the change counter; if it moved since the last refresh, fetch what changed."""
        counter = await self._store.change_counter()
        if counter != self._seen_counter:
            await self.refresh()

    async def run(self) -> None:
        """Listen and poll until cancelled; Redis outages are reported through `on_state` and waited out."""
        await asyncio.gather(self.listen(), self.poll())

    async def poll(self) -> None:
        """`poll_once` every `poll_s` until cancelled, reporting whether Redis answered."""
        while True:
            try:
                await self.poll_once()
                self._report(True)
            except Unavailable:
                self._report(False)
            except Exception:
                log.exception("applying the shared rollout state failed")
            await self._sleep(self._poll_s)

    async def listen(self) -> None:
        """Apply each rollout named on the change channel as its message comes, until cancelled. A read
        blocks until a message (no socket timeout); a lost connection is re-subscribed after `poll_s`,
        and what was published meanwhile is the poll's to find."""
        while True:
            pubsub = self._store.client.pubsub()
            try:
                await pubsub.subscribe(self._store.channel)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    name, _, version = str(message["data"]).rpartition(" ")
                    if name and version.isdigit() and int(version) > self._store.known_version(name):
                        await self.refresh([name])
            except (RedisError, OSError, Unavailable):
                pass
            except Exception:
                log.exception("the shared rollout state's change listener failed")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await self._sleep(self._poll_s)  # Redis is down: the poll reports it; try again

    def _report(self, up: bool) -> None:
        if self._on_state is not None:
            self._on_state(up)
