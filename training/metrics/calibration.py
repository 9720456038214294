"""Decision-threshold calibration for good-vs-defect inspection.

A deployed classifier does not have to call a part defective only when a defect class wins the
argmax: it can threshold P(defect) = 1 - P(good). On validation we pick the highest threshold whose
miss rate (defect images scoring below it) stays within `eval.target_miss_rate`, and report the
overkill rate (good images scoring at or above it) that this costs.
"""

from __future__ import annotations

import math

import torch

from training.schema.metric_names import OVERKILL_METRIC, THRESHOLD_METRIC


def threshold_at_miss_rate(defect_scores: torch.Tensor, target_miss_rate: float) -> float:
    """The highest threshold t with share(defect_scores < t) <= target_miss_rate.

    With k = floor(target * n) misses allowed, t is the (k+1)-th smallest defect score: every score
    below it is a miss (at most k of them, fewer on ties), and any higher t would miss k+1.
    NaN without defect images.
    """
    n = defect_scores.numel()
    if n == 0:
        return math.nan
    allowed = math.floor(target_miss_rate * n + 1e-9)  # 0.2 * 10 must allow 2, not 1.999...
    return float(defect_scores.double().sort().values[min(allowed, n - 1)])


def calibration_metrics(
    probs: torch.Tensor, targets: torch.Tensor, good_index: int, target_miss_rate: float
) -> dict[str, float]:
    """{threshold_at_target_miss, overkill_at_target_miss} from softmax `probs` (N, C) and labels."""
    scores = 1.0 - probs[:, good_index].double()
    is_good = targets == good_index
    threshold = threshold_at_miss_rate(scores[~is_good], target_miss_rate)
    good_scores = scores[is_good]
    if math.isnan(threshold) or good_scores.numel() == 0:
        overkill = math.nan
    else:
        overkill = float((good_scores >= threshold).double().mean())
    return {THRESHOLD_METRIC: threshold, OVERKILL_METRIC: overkill}
