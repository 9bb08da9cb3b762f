"""Shadow quality of an experiment's variants against control, and the quality guard. Pure, event loop only.

A sampled share of the searches a variant serves (`ExperimentPolicy.quality.shadow_sample_rate`) also runs
on control off the request path (SearchCore, through the gateway's one `ShadowSampler`), embedded with
control's own model, and the two top k are compared (`rollout.quality.compare_rankings`: overlap@k,
rank-biased overlap, the ids found on one side only). `VariantQuality` counts one variant's comparisons
the way a rollout's stage does: binned per fold (the same 101 bins, so counts stay mergeable), judged by
the rollout's own `QualityEvidence` (its anytime-valid sign test on the median overlap, `min_samples`, the
bounded top of differing ids). Nothing here is a second implementation of the guard.

An experiment is one long "stage": the comparisons accumulate from start to end, and each variant's guard
runs at alpha / N (N variants), so the chance of vetoing any faithful variant, however often the
experiment is read, stays within the policy's alpha.

The guard (`ShadowQualityGuard`, the manager's `QualityGuard`) vetoes only when the policy turns it on
(`ExperimentPolicy.quality_guard`): a variant is usually *meant* to rank differently (a new model, a
boost), and the numbers are then information, not a failure. Turned on (an index rebuild, a quantization
or a re-ingestion, where the answers should stay the same), a vetoed variant cannot win, with the numbers
in the veto.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from searchgw.gateway.experiments.model import ArmSpec, Experiment
from searchgw.gateway.rollout.quality import QualityEvidence, QualityPolicy, QualitySummary, quality_bin

#: How the guard's sentences name the arms.
_SUBJECTS = ("variant", "control")


def variant_policy(policy: QualityPolicy, variants: int) -> QualityPolicy:
    """One variant's guard policy: the experiment's, at alpha / N."""
    return dataclasses.replace(policy, alpha=policy.alpha / max(1, variants))


class VariantQuality:
    """One variant's shadow comparisons: those since the last fold (binned) and the evidence so far."""

    __slots__ = ("evidence", "pending_overlaps", "pending_rbos")

    def __init__(self, evidence: QualityEvidence) -> None:
        self.evidence = evidence
        self.pending_overlaps: dict[int, int] = {}
        self.pending_rbos: dict[int, int] = {}

    def record(self, overlap: float, rbo: float, differing: Sequence[str]) -> None:
        """Count one comparison (O(1) but for `differing`); the guard sees it at the next fold."""
        o, r = quality_bin(overlap), quality_bin(rbo)
        self.pending_overlaps[o] = self.pending_overlaps.get(o, 0) + 1
        self.pending_rbos[r] = self.pending_rbos.get(r, 0) + 1
        if differing:
            self.evidence.differing.add(differing)

    def take_pending(self) -> tuple[dict[int, int], dict[int, int]]:
        """The comparisons since the last fold, removed (a follower hands them to the leader)."""
        taken = self.pending_overlaps, self.pending_rbos
        self.pending_overlaps, self.pending_rbos = {}, {}
        return taken

    def add_pending(self, overlaps: Mapping[int, int], rbos: Mapping[int, int]) -> None:
        """Comparisons counted elsewhere (another replica's), folded with this one's at the next fold."""
        for index, count in overlaps.items():
            self.pending_overlaps[index] = self.pending_overlaps.get(index, 0) + count
        for index, count in rbos.items():
            self.pending_rbos[index] = self.pending_rbos.get(index, 0) + count

    def fold(self) -> bool:
        """Fold the pending comparisons into the evidence (and the guard); True if there were any."""
        if not self.pending_overlaps:
            return False
        overlaps, rbos = self.pending_overlaps, self.pending_rbos
        self.pending_overlaps, self.pending_rbos = {}, {}
        self.evidence.add(overlaps, rbos)
        return True


class ExperimentQuality:
    """Every variant's shadow quality in one experiment (empty when its policy samples nothing)."""

    def __init__(self, experiment: Experiment, stored: Mapping[str, Any] | None = None) -> None:
        policy = experiment.policy.quality
        self.guarded = experiment.policy.quality_guard
        self.policy = policy
        self.variants: dict[str, VariantQuality] = {}
        if policy.enabled:
            per_variant = variant_policy(policy, len(experiment.variants))
            stored = stored or {}
            for variant in experiment.variants:
                data = stored.get(variant.name)
                evidence = (QualityEvidence(per_variant) if not isinstance(data, Mapping)
                            else QualityEvidence.from_json(per_variant, data))
                self.variants[variant.name] = VariantQuality(evidence)

    @property
    def enabled(self) -> bool:
        return bool(self.variants)

    def record(self, variant: str, overlap: float, rbo: float, differing: Sequence[str]) -> bool:
        quality = self.variants.get(variant)
        if quality is None:
            return False
        quality.record(overlap, rbo, differing)
        return True

    def fold(self) -> bool:
        changed = False
        for quality in self.variants.values():
            changed = quality.fold() or changed
        return changed

    def take_pending(self) -> dict[str, tuple[dict[int, int], dict[int, int]]]:
        taken = {name: q.take_pending() for name, q in self.variants.items()}
        return {name: bins for name, bins in taken.items() if bins[0]}

    def add_pending(self, pending: Mapping[str, tuple[Mapping[int, int], Mapping[int, int]]]) -> None:
        for name, (overlaps, rbos) in pending.items():
            quality = self.variants.get(name)
            if quality is not None:
                quality.add_pending(overlaps, rbos)

    def summaries(self) -> dict[str, QualitySummary]:
        return {name: q.evidence.summary(*_SUBJECTS) for name, q in self.variants.items()}

    def veto(self, variant: str) -> str | None:
        """The reason `variant` must not win (its guard rejected, and the policy turns the guard on), or None."""
        quality = self.variants.get(variant)
        if not self.guarded or quality is None or not quality.evidence.rejected:
            return None
        return quality.evidence.summary(*_SUBJECTS).summary

    def to_json(self) -> dict[str, Any]:
        return {name: q.evidence.to_json() for name, q in self.variants.items()}


class ShadowQualityGuard:
    """The manager's `QualityGuard` over shadow comparisons: `quality_of(experiment name)` finds the
    experiment's `ExperimentQuality` (None when it holds no live state)."""

    def __init__(self, quality_of: Callable[[str], ExperimentQuality | None]) -> None:
        self._quality_of = quality_of

    def veto(self, experiment: Experiment, variant: ArmSpec) -> str | None:
        quality = self._quality_of(experiment.name)
        return None if quality is None else quality.veto(variant.name)
