"""What a user needs to trust RL-KD's selector: per teacher, how often it was selected and the policy's mean
probability, over time; the same split by whether the teacher was right on the gold label; the share of examples
given no teacher; reward and advantage statistics; the policy's entropy. Counted as sums (cheap to keep in a
checkpoint), logged every few steps, summarised per stage, and plotted."""
from __future__ import annotations

import math
from pathlib import Path

import torch


class Tally:
    """Sums over the acts and policy updates of one span (a log interval, or a stage)."""

    def __init__(self, teachers: int):
        k = teachers
        self.sums = {"examples": 0.0, "selected": [0.0] * k, "pi": [0.0] * k, "right": [0.0] * k,
                     "selected_right": [0.0] * k, "selected_wrong": [0.0] * k, "no_teacher": 0.0, "entropy": 0.0,
                     "updates": 0, "rewards": 0.0, "reward": 0.0, "reward_sq": 0.0, "advantage": 0.0,
                     "advantage_sq": 0.0, "baseline": None}

    def add_act(self, probs: torch.Tensor, chosen: torch.Tensor, right: torch.Tensor | None, entropy: torch.Tensor):
        s, n = self.sums, probs.shape[0]
        s["examples"] += n
        for key, value in (("selected", chosen.sum(0)), ("pi", probs.sum(0))):
            s[key] = [a + float(b) for a, b in zip(s[key], value)]
        if right is not None:
            right = right.float()
            for key, value in (("right", right.sum(0)), ("selected_right", (chosen * right).sum(0)),
                               ("selected_wrong", (chosen * (1 - right)).sum(0))):
                s[key] = [a + float(b) for a, b in zip(s[key], value)]
        s["no_teacher"] += float((chosen.sum(-1) == 0).sum())
        s["entropy"] += float(entropy.mean(-1).sum())

    def add_update(self, stats: dict, count: int) -> None:
        """One policy update: its rewards' and advantages' means and standard deviations over `count` values."""
        s = self.sums
        s["updates"] += 1
        s["rewards"] += count
        for key in ("reward", "advantage"):
            mean, std = stats[key], stats[f"{key}_std"]
            s[key] += mean * count
            s[f"{key}_sq"] += (std ** 2 + mean ** 2) * count
        s["baseline"] = stats["baseline"]

    def values(self, names: list[str]) -> dict[str, float]:
        """Rates and means over the span, as logged: select/<t>, pi/<t>, select_right/<t>, select_wrong/<t>,
        policy/no_teacher, policy/entropy, policy/reward (and _std), policy/advantage (and _std), policy/baseline."""
        s, out = self.sums, {}
        if s["examples"]:
            n = s["examples"]
            for k, name in enumerate(names):
                out[f"select/{name}"] = s["selected"][k] / n
                out[f"pi/{name}"] = s["pi"][k] / n
                right, wrong = s["right"][k], n - s["right"][k]
                if right:
                    out[f"select_right/{name}"] = s["selected_right"][k] / right
                if wrong and any(s["right"]):
                    out[f"select_wrong/{name}"] = s["selected_wrong"][k] / wrong
            out["policy/no_teacher"] = s["no_teacher"] / n
            out["policy/entropy"] = s["entropy"] / n
        if s["rewards"]:
            m = s["rewards"]
            for key in ("reward", "advantage"):
                mean = s[key] / m
                out[f"policy/{key}"] = mean
                out[f"policy/{key}_std"] = math.sqrt(max(s[f"{key}_sq"] / m - mean ** 2, 0.0))
            out["policy/baseline"] = s["baseline"]
        return out

    def summary(self, names: list[str]) -> dict:
        """A stage's figures by teacher, for report.json."""
        v, s = self.values(names), self.sums
        per = lambda key: {n: v[f"{key}/{n}"] for n in names if f"{key}/{n}" in v} or None  # noqa: E731
        n = s["examples"]
        return {"selection_rate": per("select"), "mean_pi": per("pi"),
                "selection_rate_when_right": per("select_right"), "selection_rate_when_wrong": per("select_wrong"),
                "right_share": {name: s["right"][k] / n for k, name in enumerate(names)} if n and any(s["right"])
                else None,
                "no_teacher_share": v.get("policy/no_teacher"), "entropy": v.get("policy/entropy"),
                "policy_updates": s["updates"],
                "reward": {"mean": v.get("policy/reward"), "std": v.get("policy/reward_std")},
                "advantage": {"mean": v.get("policy/advantage"), "std": v.get("policy/advantage_std")}}


def over_time(history: list[dict], names: list[str], points: int = 10) -> list[dict]:
    """The logged rows of one stage in at most `points` equal spans: per span its last step and each teacher's
    selection rate and mean probability (the rows' plain mean)."""
    if not history:
        return []
    size = math.ceil(len(history) / points)
    out = []
    for start in range(0, len(history), size):
        rows = history[start:start + size]
        mean = lambda key: sum(r[key] for r in rows if key in r) / max(1, sum(key in r for r in rows))  # noqa
        out.append({"step": rows[-1]["step"], "select": {n: mean(f"select/{n}") for n in names},
                    "pi": {n: mean(f"pi/{n}") for n in names}})
    return out


def plot_selection(history: dict[str, list[dict]], names: list[str], path: Path) -> bool:
    """selection.png: per stage (rows), each teacher's selection rate and mean pi, its rate when right and when
    wrong on the gold label, the share of examples given no teacher with the policy's entropy, and the rewards."""
    stages = {name: rows for name, rows in history.items() if rows}
    if not stages:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(stages), 4, figsize=(18, 3.6 * len(stages)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, (stage, rows) in zip(axes, stages.items()):
        steps = [r["step"] for r in rows]
        for k, name in enumerate(names):
            c = colours[k % len(colours)]
            _line(row[0], rows, steps, f"select/{name}", f"{name} selected", c, "-")
            _line(row[0], rows, steps, f"pi/{name}", f"{name} mean π", c, ":")
            _line(row[1], rows, steps, f"select_right/{name}", f"{name} when right", c, "-")
            _line(row[1], rows, steps, f"select_wrong/{name}", f"{name} when wrong", c, "--")
        _line(row[2], rows, steps, "policy/no_teacher", "examples with no teacher", "k", "-")
        _line(row[2], rows, steps, "policy/entropy", "policy entropy (nats)", "grey", "--")
        _line(row[3], rows, steps, "policy/reward", "reward", "k", "-")
        _line(row[3], rows, steps, "policy/advantage_std", "advantage std", "grey", "--")
        titles = ("selection rate and mean π", "selection rate, teacher right / wrong on the gold label",
                  "no teacher; entropy", "reward (mean) and advantage (std)")
        for ax, title in zip(row, titles):
            ax.set_title(f"{stage}: {title}", fontsize=9)
            ax.set_xlabel("optimizer step")
            ax.legend(fontsize=7)
        for ax in row[:2]:
            ax.set_ylim(-0.02, 1.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _line(ax, rows, steps, key, label, colour, style) -> None:
    points = [(s, r[key]) for s, r in zip(steps, rows) if r.get(key) is not None]
    if points:
        ax.plot(*zip(*points), style, color=colour, label=label)


def markdown(selection: dict) -> list[str]:
    """report.md's section: per stage, each teacher's figures."""
    lines = ["## Teacher selection (RL-KD)", ""]
    for stage, s in selection.items():
        if not s.get("selection_rate"):
            continue
        lines += [f"Stage **{stage}**: reward `{s['reward_kind']}`, {s['policy_updates']} policy updates after "
                  f"{s['warmup_steps']} equal-weight steps; examples given no teacher {s['no_teacher_share']:.2f}; "
                  f"policy entropy {s['entropy']:.3f} nats (0.693 at p = 0.5); reward {_pm(s['reward'])}, "
                  f"advantage {_pm(s['advantage'])}.", "",
                  "| teacher | selected | mean π | right on gold | selected when right | selected when wrong |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, rate in s["selection_rate"].items():
            cells = [s["mean_pi"].get(name), (s.get("right_share") or {}).get(name),
                     (s.get("selection_rate_when_right") or {}).get(name),
                     (s.get("selection_rate_when_wrong") or {}).get(name)]
            lines.append(f"| {name} | {rate:.3f} | " + " | ".join("–" if c is None else f"{c:.3f}" for c in cells)
                         + " |")
        lines.append("")
    return lines + ["![teacher selection](selector/selection.png)", ""]


def _pm(stat: dict) -> str:
    return "–" if stat.get("mean") is None else f"{stat['mean']:.2e} ± {stat['std']:.2e}"
