"""Screening metrics from scratch: AUROC from ranks, sensitivity/specificity, ROC."""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the mean of the ranks they span.

    ``[10, 20, 20, 30]`` → ``[1, 2.5, 2.5, 4]`` (the "average" method of a rank transform)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(v, kind="stable")
    ordered = v[order]
    # a tie group starts wherever the sorted value changes
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    ends = np.append(starts[1:], len(v))  # one past each group's last position
    group_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(v), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (average ranks for ties)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def sens_spec(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity of ``score >= threshold`` as positive."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    pred = s >= threshold
    sens = float((pred & y).sum() / max(y.sum(), 1))
    spec = float((~pred & ~y).sum() / max((~y).sum(), 1))
    return sens, spec


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct threshold, from (0, 0) to (1, 1)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    fpr, tpr = [0.0], [0.0]
    for thr in np.unique(s)[::-1]:
        se, sp = sens_spec(s, y, float(thr))
        fpr.append(1.0 - sp)
        tpr.append(se)
    fpr.append(1.0)
    tpr.append(1.0)
    return np.array(fpr), np.array(tpr)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising Youden's J, placed midway between neighbouring distinct scores."""
    s = np.sort(np.unique(np.asarray(scores, dtype=np.float64)))
    if len(s) == 1:
        return float(s[0])
    candidates = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2.0, [s[-1] + 1e-6]])
    best, best_j = float(candidates[0]), -2.0
    for thr in candidates:
        se, sp = sens_spec(scores, labels, float(thr))
        if se + sp - 1.0 > best_j + 1e-12:
            best, best_j = float(thr), se + sp - 1.0
    return best
