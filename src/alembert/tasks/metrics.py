"""GLUE leaderboard metrics, reported as percentages (x100) like the leaderboard shows them."""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("accuracy", "f1", "matthews_corr", "pearson", "spearman")
REGRESSION_METRICS = ("pearson", "spearman")


def compute_metrics(names, predictions, labels, *, regression: bool) -> dict[str, float]:
    """predictions: logits (N, C) or class ids (N,) for classification; (N,) or (N, 1) for regression."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    preds = np.asarray(predictions)
    gold = np.asarray(labels)
    if regression:
        preds = preds.reshape(len(preds), -1)
        if preds.shape[1] != 1:
            raise ValueError(f"regression predictions must have shape (N,) or (N, 1), got {np.shape(predictions)}")
        preds = preds[:, 0].astype(float)
        gold = gold.astype(float)
    elif preds.ndim == 2:
        preds = preds.argmax(axis=-1)
    if preds.shape[0] != gold.shape[0]:
        raise ValueError(f"{preds.shape[0]} predictions but {gold.shape[0]} labels")

    out = {}
    for name in names:
        if name == "accuracy":
            value = accuracy_score(gold, preds)
        elif name == "f1":
            # GLUE's F1 (MRPC, QQP) is binary on the positive class; macro-average anything wider.
            binary = set(np.unique(gold)) | set(np.unique(preds)) <= {0, 1}
            value = f1_score(gold, preds, average="binary" if binary else "macro")
        elif name == "matthews_corr":
            value = matthews_corrcoef(gold, preds)
        elif name == "pearson":
            value = pearsonr(preds, gold)[0]
        elif name == "spearman":
            value = spearmanr(preds, gold)[0]
        else:
            raise ValueError(f"unknown metric '{name}' (expected one of {', '.join(METRIC_NAMES)})")
        out[name] = float(value) * 100.0
    return out
