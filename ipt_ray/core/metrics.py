"""Classification metrics from predictions (no scikit-learn needed).

Edge cases: a class that is never predicted nor present contributes F1 = 0 to the macro mean
only if it is in the label set (absent classes are counted, as in scikit-learn with
``labels=range(C)`` and ``zero_division=0``); MCC is 0 when its denominator is 0.
"""

from __future__ import annotations

import math

import torch


def confusion(preds: torch.Tensor, labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """(C, C) counts, rows = true label, columns = prediction."""
    index = labels.long() * num_labels + preds.long()
    return torch.bincount(index, minlength=num_labels * num_labels).view(num_labels, num_labels)


def classification_metrics(
    preds: torch.Tensor, labels: torch.Tensor, num_labels: int
) -> dict[str, float]:
    """accuracy, f1_macro, mcc (multiclass Gorodkin form) and, for 2 classes, f1 of label 1."""
    cm = confusion(preds, labels, num_labels).double()
    total = cm.sum().item()
    correct = cm.diag().sum().item()
    tp = cm.diag()
    precision_den = cm.sum(dim=0)
    recall_den = cm.sum(dim=1)
    f1 = torch.where(
        precision_den + recall_den > 0,
        2 * tp / (precision_den + recall_den).clamp(min=1e-12),
        torch.zeros_like(tp),
    )
    t, p = recall_den, precision_den
    numerator = correct * total - (t * p).sum().item()
    denominator = math.sqrt((total**2 - (p * p).sum().item()) * (total**2 - (t * t).sum().item()))
    out = {
        "accuracy": correct / total if total else 0.0,
        "f1_macro": f1.mean().item(),
        "mcc": numerator / denominator if denominator else 0.0,
    }
    if num_labels == 2:
        out["f1"] = f1[1].item()
    return out
