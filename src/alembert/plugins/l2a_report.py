"""What a user needs to trust L2A's selector: how many generated examples it keeps, by origin (a chain started in
the target or in a source), its mean keep probability and entropy, the rewards and the held-out score they come
from; counted as sums (cheap to keep in a checkpoint), logged every few steps, summarised per stage, plotted."""
from __future__ import annotations

import math
from pathlib import Path

import torch


class Counts:
    def __init__(self):
        self.sums = {"drawn": 0.0, "kept": 0.0, "pi": 0.0, "entropy": 0.0, "from_source": 0.0,
                     "kept_from_source": 0.0, "target_rows": 0, "updates": 0, "reward": 0.0, "reward_sq": 0.0,
                     "baseline": None, "heldout": None}

    def any(self) -> bool:
        return bool(self.sums["drawn"] or self.sums["updates"])

    def add_act(self, keep: torch.Tensor, probs: torch.Tensor, entropy: torch.Tensor, from_source: torch.Tensor,
                target_rows: int) -> None:
        s = self.sums
        s["drawn"] += len(keep)
        s["kept"] += float(keep.sum())
        s["pi"] += float(probs.sum())
        s["entropy"] += float(entropy.sum())
        s["from_source"] += float(from_source.sum())
        s["kept_from_source"] += float((keep * from_source).sum())
        s["target_rows"] += target_rows

    def add_update(self, stats: dict, heldout: float) -> None:
        s = self.sums
        s["updates"] += 1
        s["reward"] += stats["reward"]
        s["reward_sq"] += stats["reward"] ** 2
        s["baseline"], s["heldout"] = stats["baseline"], heldout

    def values(self) -> dict[str, float]:
        """keep (share kept), pi (mean keep probability), keep_source / keep_target (the share kept among those
        whose chain started in a source / in the target), entropy, and over the policy updates reward (mean and
        std), baseline and heldout (the last held-out score)."""
        s, out = self.sums, {}
        if s["drawn"]:
            n, src = s["drawn"], s["from_source"]
            out.update(keep=s["kept"] / n, pi=s["pi"] / n, entropy=s["entropy"] / n,
                       generated_share=n / (n + s["target_rows"]))
            if src:
                out["keep_source"] = s["kept_from_source"] / src
            if n - src:
                out["keep_target"] = (s["kept"] - s["kept_from_source"]) / (n - src)
        if s["updates"]:
            mean = s["reward"] / s["updates"]
            out.update(updates=s["updates"], reward=mean,
                       reward_std=math.sqrt(max(s["reward_sq"] / s["updates"] - mean ** 2, 0.0)),
                       baseline=s["baseline"], heldout=s["heldout"])
        return out


def plot_decisions(history: dict[str, list[dict]], path: Path) -> bool:
    """selection.png: per stage (rows), the keep rate (all, from sources, from the target) and mean keep
    probability; the policy's entropy; the reward and its baseline with the held-out score."""
    stages = {name: rows for name, rows in history.items() if rows}
    if not stages:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(stages), 3, figsize=(15, 3.6 * len(stages)), squeeze=False)
    for row, (stage, rows) in zip(axes, stages.items()):
        for key, label, style in (("keep", "kept", "k-"), ("pi", "mean p(keep)", "k:"),
                                  ("keep_source", "kept, from a source", "C0-"),
                                  ("keep_target", "kept, from the target", "C1-")):
            _line(row[0], rows, key, label, style)
        _line(row[1], rows, "entropy", "policy entropy (nats)", "k-")
        _line(row[2], rows, "reward", "reward (held-out change)", "k-")
        _line(row[2], rows, "baseline", "baseline", "grey")
        twin = row[2].twinx()
        _line(twin, rows, "heldout", "held-out score", "C2--")
        if twin.lines:
            twin.legend(fontsize=7, loc="lower right")
        for ax, title in zip(row, ("keep rate", "entropy", "reward, baseline; held-out score (right)")):
            ax.set_title(f"{stage}: {title}", fontsize=9)
            ax.set_xlabel("optimizer step")
            ax.legend(fontsize=7, loc="best")
        row[0].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _line(ax, rows, key, label, style) -> None:
    points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    if points:
        ax.plot(*zip(*points), style, label=label)


def markdown(entry: dict) -> list[str]:
    """report.md's section: how the generated examples were made and, under L2A, what the selector kept."""
    g = entry["generation"]
    lines = ["## Generated examples", "", f"{g['candidates']} examples by `{g['generator']}` from "
             f"{g['starts']['target']} target and {g['starts']['sources']} source sentences in {g['seconds']:.0f} s"
             + (f"; the masked-LM head trained {g['head']['steps']} steps in {g['head']['seconds']:.0f} s, held-out "
                f"masked loss {g['head']['masked_loss_before']:.2f} → {g['head']['masked_loss_after']:.2f} nats"
                if g.get("head") else "") + ". Each one, with its origin: `augmented.jsonl`.", ""]
    if entry.get("select") is False:
        lines += ["L2A with its selector off: every generated example was kept (the selector's ablation).", ""]
    for stage, s in (entry.get("selection") or {}).items():
        if "keep" not in s:
            continue
        by_origin = ", ".join(f"{s[k]:.2f} of those from the {name}" for k, name in
                              (("keep_source", "sources"), ("keep_target", "target")) if k in s)
        lines += [f"L2A, stage **{stage}**: kept {s['keep']:.2f} of the generated examples drawn ({by_origin}); "
                  f"mean p(keep) {s['pi']:.2f}, policy entropy {s['entropy']:.3f} nats (0.693 at p = 0.5); "
                  f"{s.get('updates', 0)} policy updates, mean reward {s.get('reward', 0):.2e}, last held-out "
                  f"score {s.get('heldout', float('nan')):.3f} (from {g.get('heldout')} held-out target examples).",
                  "", "![L2A decisions](selector/selection.png)", ""]
    return lines
