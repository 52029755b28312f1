"""Latency against quality: collect points from run reports or bench files, find the frontier, plot it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from alembert.errors import AlembertError  # noqa: E402


class Point(NamedTuple):
    label: str
    latency_ms: float
    metric: float


def pareto_front(points) -> list[Point]:
    """The points no other point beats: none is at least as fast and at least as good, and better in one.
    Returned fastest first (so the metric rises along the list)."""
    points = [Point(*p) for p in points]

    def dominated(p: Point) -> bool:
        return any(q.latency_ms <= p.latency_ms and q.metric >= p.metric
                   and (q.latency_ms < p.latency_ms or q.metric > p.metric) for q in points)

    return sorted((p for p in points if not dominated(p)), key=lambda p: (p.latency_ms, -p.metric))


def plot_pareto(points, path: str | Path, x_label: str, y_label: str, title: str | None = None) -> list[Point]:
    """Every point labelled; the frontier as a step line (lower latency and higher metric are better).
    Returns the frontier."""
    points = [Point(*p) for p in points]
    if not points:
        raise AlembertError(f"pareto plot {path}: no points to plot")
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    on_front = set(front)
    ax.scatter([p.latency_ms for p in points], [p.metric for p in points],
               c=["#2a7" if p in on_front else "#999" for p in points], zorder=3)
    for p, lift in zip(points, _label_lifts(points)):
        ax.annotate(p.label, (p.latency_ms, p.metric), textcoords="offset points", xytext=(4, 4 + 9 * lift),
                    fontsize=7, arrowprops={"arrowstyle": "-", "color": "#bbb", "lw": 0.5} if lift else None)
    # post-step: from each frontier point the best metric reachable holds until the next, slower point
    ax.step([p.latency_ms for p in front], [p.metric for p in front], where="post", color="#2a7",
            label="Pareto frontier", zorder=2)
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long labels near the edge stay in the picture
    plt.close(fig)
    return front


def _label_lifts(points: list[Point]) -> list[int]:
    """How many label lines to lift each label by, so labels of points close together do not overlap."""
    xs, ys = [p.latency_ms for p in points], [p.metric for p in points]
    x_span, y_span = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    lifts: list[int] = []
    for i, p in enumerate(points):
        near = [lifts[j] for j, q in enumerate(points[:i])
                if abs(q.latency_ms - p.latency_ms) / x_span < 0.25 and abs(q.metric - p.metric) / y_span < 0.06]
        lifts.append(next(k for k in range(len(near) + 1) if k not in near))
    return lifts


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise AlembertError(f"{path}: cannot read {what} ({err})") from err


def _report_points(folder: Path, batch_size: int) -> tuple[list[Point], str]:
    report = _read_json(folder / "report.json", "a run report")
    try:
        metric = report["task"]["main_metric"]
        points = []
        for row in report["models"]:
            key = f"latency_ms_b{batch_size}"
            if key not in row.get("speed", {}):
                raise AlembertError(f"{folder / 'report.json'}: model '{row['name']}' has no speed.{key} "
                                    f"(expected a run measured with speed: true at batch {batch_size})")
            points.append(Point(f"{report['name']}/{row['name']}", row["speed"][key], row["metrics"][metric]))
    except (KeyError, TypeError) as err:
        raise AlembertError(f"{folder / 'report.json'}: missing {err} (expected an alembert run report)") from err
    return points, metric


def _bench_points(path: Path, batch_size: int) -> tuple[list[Point], str]:
    """Each (model, backend) at `batch_size` and its largest measured sequence length: p50 and dev metric."""
    result = _read_json(path, "a bench result")
    if not isinstance(result, dict) or "rows" not in result:
        raise AlembertError(f"{path}: no 'rows' (expected a JSON file written by alembert bench --output)")
    if not result.get("task"):
        raise AlembertError(f"{path}: no task metric (expected alembert bench run with --task)")
    rows = [r for r in result["rows"] if r["batch_size"] == batch_size]
    if not rows:
        raise AlembertError(f"{path}: no rows at batch size {batch_size} (measured: "
                            f"{sorted({r['batch_size'] for r in result['rows']})})")
    longest: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["model"], r["backend"])
        if key not in longest or r["seq_len"] > longest[key]["seq_len"]:
            longest[key] = r
    return [Point(f"{m} {b}", r["latency_ms_p50"], r["metric"]) for (m, b), r in longest.items()], \
        result["task"]["main_metric"]


def collect_points(inputs, batch_size: int = 1) -> tuple[list[Point], str]:
    """Points from run directories (their report.json) and bench JSON files; returns them and the metric name,
    which must be the same for all inputs."""
    points, metrics = [], {}
    if not inputs:
        raise AlembertError("pareto inputs: none given (expected run directories or bench JSON files)")
    for item in map(Path, inputs):
        if item.is_dir():
            if not (item / "report.json").is_file():
                raise AlembertError(f"{item}: no report.json (expected a run directory or a bench JSON file)")
            found, metric = _report_points(item, batch_size)
        elif item.is_file():
            found, metric = _bench_points(item, batch_size)
        else:
            raise AlembertError(f"{item}: no such file or directory (expected a run directory or a bench JSON file)")
        points += found
        metrics[str(item)] = metric
    if len(set(metrics.values())) > 1:
        raise AlembertError("pareto inputs: different metrics (" + ", ".join(f"{k}: {v}" for k, v in metrics.items())
                            + "); expected runs of one task")
    return points, next(iter(metrics.values()))
