"""Asynchronous successive halving (ASHA / async Hyperband) whose rungs do not cull noise.

The rungs are Tune's `AsyncHyperBandScheduler`'s: bracket s has milestones grace * rf**(k + s), and a
trial reaching a milestone is compared with the trials recorded there before it, against the
(1 - 1/rf) quantile of their values (the cut). Rules keep a decision from resting on noise:

- **within the noise**: a trial is stopped only if it is below the cut by more than `margin_sds`
  seed-noise standard deviations, measured at that epoch on the reference config's seeds
  (search/noise.py); while those seeds have not reached the epoch, nobody is stopped there;
- **at the reference's pace** (`pace`, the default's choice): a trial as far along as the reference
  config was at that epoch (its mean over seeds, less the noise margin) is not stopped; while the
  reference is still at chance, a trial at chance is as far along as it, so no config is culled for
  not having learned yet where the reference had not either;
- **before learning** (`wait_for_learning`, off by default): no trial is stopped at a milestone
  before the reference's mean left chance level (`Task.chance_metrics`: a constant prediction's
  score) by `chance_sds` seed sds. With a warm-up or OneCycle schedule this stops nearly nothing:
  benchmarks/rung_rules.py replays these rules on full learning curves.

Without a reference config yet (no baseline, and no trial has run its full budget), the rungs cut as
plain ASHA. Replicas (noise and confirmation seeds) and the reference baseline run their full budget.
Each stop is journaled with its reason ("below the rung-4 cut 0.41 by 0.12, noise 0.03"), and so is
each decision a rule waived and each value recorded at a rung: a resumed search cuts against the
rungs as they were (Tune rebuilds the scheduler from its constructor on resume). A trial's bracket
is drawn from a generator seeded by the search seed and the trial's creation index, so a search
repeats, resumed or not, without NumPy's global state.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.constraints import is_finite
from search.journal import TrialJournal
from search.noise import Curve
from search.roles import creation_index, group_of, is_reference, runs_full_budget


def milestones(grace_period: int, max_t: int, reduction_factor: float, bracket: int) -> list[int]:
    """The epochs at which bracket `bracket` compares its trials, as Tune's ASHA places them."""
    count = int(np.log(max_t / grace_period) / np.log(reduction_factor) - bracket + 1)
    return [int(grace_period * reduction_factor ** (k + bracket)) for k in range(count)]


class NoiseAwareHyperband(FIFOScheduler):
    """ASHA with the two rules of the module docstring."""

    def __init__(
        self,
        metric: str,
        mode: str,
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 2.0,
        brackets: int = 1,
        seed: int = 0,
        margin_sds: float = 1.0,
        wait_for_learning: bool = False,
        journal: Path | None = None,
        chance_sds: float = 2.0,
        pace: bool = True,
    ):
        super().__init__()
        # ours, not TrialScheduler._metric (Ray private): the `metric` property below reads it
        self.watched, self.mode, self.sign = metric, mode, 1.0 if mode == "max" else -1.0
        self.max_t, self.seed, self.rf = max_t, seed, reduction_factor
        self.margin_sds, self.wait_for_learning = margin_sds, wait_for_learning
        self.chance_sds = chance_sds  # the reference left chance when its mean beats it by this many seed sds
        self.pace = pace  # keep a trial within the noise of the reference's own value at that epoch
        grace = min(grace_period, max_t)
        self.rungs = [{m: {} for m in milestones(grace, max_t, reduction_factor, s)} for s in range(brackets)]
        self.bracket_of: dict[str, int] = {}
        self.values: dict[str, dict[int, float]] = {}  # trial -> epoch -> metric
        self.groups: dict[str, str] = {}  # trial -> group (trial id of its config's first run)
        self.reference: str | None = None  # the group whose seeds measure the noise
        self.chance: float | None = None
        self.journal_path = journal
        self._journal: TrialJournal | None = None
        self.decisions = {"stopped": 0, "within_noise": 0, "before_learning": 0, "noise_unmeasured": 0, "at_pace": 0}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the scheduler once, when the search starts; a resumed search reads the journal again
        return {**self.__dict__, "_journal": None}

    @property
    def journal(self) -> TrialJournal | None:
        """The trial journal, read once: after a resume it gives back the reference's earlier epochs and
        the values recorded at each rung (the cuts compare with them)."""
        if self._journal is None and self.journal_path is not None:
            self._journal = TrialJournal(self.journal_path)
            for trial_id, history in self._journal.history.items():
                self.groups.setdefault(trial_id, self._journal.groups.get(trial_id, trial_id))
                for epoch in history:
                    if is_finite(epoch.get(self.watched)):
                        self.values.setdefault(trial_id, {})[epoch["epoch"]] = float(epoch[self.watched])
            self.reference = self.reference or self._journal.reference
            for bracket, rungs in self._journal.rungs.items():
                for milestone, recorded in rungs.items():
                    if bracket < len(self.rungs) and milestone in self.rungs[bracket]:
                        self.rungs[bracket][milestone].update(recorded)
        return self._journal

    @property
    def metric(self) -> str:
        return self.watched

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        return True  # set at construction, from the space file

    def on_trial_add(self, tune_controller, trial) -> None:
        sizes = np.array([len(r) for r in self.rungs])
        weights = np.exp(sizes - sizes.max())  # Tune's softmax over the brackets' rung counts
        rng = np.random.default_rng([self.seed, creation_index(trial) or 0])
        self.bracket_of[trial.trial_id] = int(rng.choice(len(self.rungs), p=weights / weights.sum()))
        self._note_roles(trial)

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        value, epoch = result.get(self.watched), int(result.get("epoch", 0))
        self._observe(trial, epoch, value, result)
        if not is_finite(value) or runs_full_budget(trial.config) or epoch >= self.max_t:
            return TrialScheduler.CONTINUE
        return self._rung(trial.trial_id, epoch, float(value), decide=True)

    def on_trial_complete(self, tune_controller, trial, result: dict[str, Any]) -> None:
        value, epoch = (result or {}).get(self.watched), int((result or {}).get("epoch", 0))
        if is_finite(value) and not runs_full_budget(trial.config):
            self._rung(trial.trial_id, epoch, float(value), decide=False)
        self.bracket_of.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.bracket_of.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return f"Using noise-aware async Hyperband: {self.decisions}"

    # ----------------------------------------------------------------- the reference curve

    def _note_roles(self, trial) -> None:
        self.groups[trial.trial_id] = group_of(trial.config, trial.trial_id)
        if is_reference(trial.config):
            self.reference = self.groups[trial.trial_id]

    def _observe(self, trial, epoch: int, value: Any, result: dict[str, Any]) -> None:
        _ = self.journal  # replayed on the first result
        if trial.trial_id not in self.groups:  # restored by a resumed search: on_trial_add came before us
            self._note_roles(trial)
        chance = result.get(f"chance/{self.watched}")  # Tune hands schedulers its results flattened
        if self.chance is None and is_finite(chance):
            self.chance = float(chance)
        if epoch >= 1 and is_finite(value):
            self.values.setdefault(trial.trial_id, {})[epoch] = float(value)

    def curve(self) -> Curve:
        """The reference config's runs so far (empty without a reference)."""
        curve = Curve()
        for trial_id, group in self.groups.items():
            if self.reference is not None and group == self.reference:
                for epoch, value in self.values.get(trial_id, {}).items():
                    curve.add(trial_id, epoch, value)
        return curve

    def _waiver(self, milestone: int, shortfall: float, value: float) -> tuple[str, str] | None:
        """(counter, reason) when the rules forbid stopping a trial whose (signed) `value` is `shortfall`
        below the cut at `milestone`."""
        if self.reference is None:
            return None  # nothing measured yet: plain ASHA
        curve = self.curve()
        learning = self.chance is None or curve.left_chance(milestone, self.chance, self.sign, self.chance_sds)
        if self.wait_for_learning and not learning:
            return "before_learning", f"kept at the rung-{milestone} cut: the reference is still at chance ({self.chance:.3g}) there"
        noise = curve.noise(milestone)
        if not is_finite(noise):
            return "noise_unmeasured", f"kept at the rung-{milestone} cut: seed noise not measured at epoch {milestone} yet"
        if shortfall <= self.margin_sds * noise:
            return "within_noise", f"kept at the rung-{milestone} cut: {shortfall:.2g} below it, within the seed noise {noise:.2g}"
        pace = self.sign * curve.mean(milestone)
        if self.pace and value >= pace - self.margin_sds * noise:
            return "at_pace", f"kept at the rung-{milestone} cut: as far along as the reference was at epoch {milestone}"
        return None

    # ----------------------------------------------------------------- the rungs

    def _rung(self, trial_id: str, epoch: int, value: float, decide: bool) -> str:
        _ = self.journal  # a resumed search's rungs are read back before the first cut
        bracket = self.bracket_of.get(trial_id)
        if bracket is None:
            return TrialScheduler.CONTINUE
        for milestone in sorted(self.rungs[bracket], reverse=True):
            recorded = self.rungs[bracket][milestone]
            if epoch < milestone or trial_id in recorded:
                continue
            cut = float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100)) if recorded else math.nan
            recorded[trial_id] = self.sign * value
            self._record({"trial": trial_id, "bracket": bracket, "rung": milestone, "value": self.sign * value})
            shortfall = cut - self.sign * value
            if decide and is_finite(cut) and shortfall > 0:
                return self._decide(trial_id, milestone, cut, shortfall, self.sign * value)
            break
        return TrialScheduler.CONTINUE

    def _decide(self, trial_id: str, milestone: int, cut: float, shortfall: float, value: float) -> str:
        waiver = self._waiver(milestone, shortfall, value)
        if waiver is not None:
            self.decisions[waiver[0]] += 1
            self._record({"trial": trial_id, "kept": waiver[1]})
            return TrialScheduler.CONTINUE
        self.decisions["stopped"] += 1
        noise = self.curve().noise(milestone)
        reason = f"below the rung-{milestone} cut {self.sign * cut:.3g} by {shortfall:.2g}"
        self._record({"trial": trial_id, "cut": reason + (f", seed noise {noise:.2g}" if is_finite(noise) else "")})
        return TrialScheduler.STOP

    def _record(self, event: dict[str, Any]) -> None:
        if self.journal is not None:
            self.journal.record(event)
