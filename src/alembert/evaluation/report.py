"""report.json, report.md with its plots, and the student's model card."""
from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from alembert.engine.logger import RunLogger  # noqa: E402
from alembert.models.heads import PIPELINE_TAGS, auto_class  # noqa: E402
from alembert.tasks.kinds import SEQUENCE, SPANS, TOKENS  # noqa: E402


def retained(student: float, teacher: float) -> float | None:
    return 100.0 * student / teacher if teacher else None


def _kept(student: dict, teacher: dict, metric: str) -> str:
    """', 93.1% retained', or nothing when the teacher scored 0 (no ratio exists)."""
    kept = retained(student["metrics"][metric], teacher["metrics"][metric])
    return "" if kept is None else f", {kept:.1f}% retained"


def best_teacher(rows: list[dict], metric: str) -> dict | None:
    """The teacher the student is compared with: the one teacher, or the best-scoring of several."""
    teachers = [r for r in rows if r["name"] == "teacher" or r["name"].startswith("teacher:")]
    return max(teachers, key=lambda r: r["metrics"][metric], default=None)


def plot_losses(logger: RunLogger, path: Path) -> None:
    stages = list(dict.fromkeys(r["stage"] for r in logger.rows))
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.5), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        keys = sorted({r["key"] for r in logger.rows if r["stage"] == stage} - {"lr"})
        for key in keys:
            if key.startswith("dev_") or "/" in key:  # teacher weights and policy statistics are plotted apart
                continue
            steps, values = logger.series(stage, key)
            ax.plot(steps, values, label=key)
        ax.set_title(f"stage {stage}: loss terms")
        ax.set_xlabel("optimizer step")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_teacher_weights(logger: RunLogger, path: Path) -> bool:
    """Each teacher's mean weight (and, under RL-KD, selection rate) per logged step; False if none was logged."""
    stages = list(dict.fromkeys(r["stage"] for r in logger.rows if r["key"].startswith(("weight/", "select/"))))
    if not stages:
        return False
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.5), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        for key in sorted({r["key"] for r in logger.rows if r["stage"] == stage
                           and r["key"].startswith(("weight/", "select/"))}):
            ax.plot(*logger.series(stage, key), marker="o", markersize=3, label=key)
        ax.set_title(f"stage {stage}: teachers")
        ax.set_xlabel("optimizer step")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_comparison(rows: list[dict], metric: str, path: Path) -> None:
    """Bars of the task metric and batch-1 latency for teacher and student."""
    names = [r["name"] for r in rows]
    colors = ["#2a7" if name == "student" else "#888" for name in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9, 1.5 * len(rows) + 4), 3.5))
    left.bar(names, [r["metrics"][metric] for r in rows], color=colors)
    left.set_title(f"dev {metric}")
    right.bar(names, [r["speed"]["latency_ms_b1"] for r in rows], color=colors)
    right.set_title("latency, batch 1 (ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _speedup(speed: dict, batch: int) -> str:
    """'6.1x (5.8-6.4)': the median per-round speed-up over the first model, with its 95 % interval; '*' when the
    interval is too wide to trust (speed warnings)."""
    ratio = speed.get(f"speedup_b{batch}")
    if ratio is None:
        return ""
    interval = f" ({ratio['ci95'][0]:.1f}-{ratio['ci95'][1]:.1f})" if ratio.get("ci95") else ""
    return f"{ratio['median']:.1f}x{interval}{'' if ratio.get('trusted', True) else ' *'}"


def speed_warnings(rows: list[dict]) -> list[str]:
    return [f"{r['name']}, batch {b}: {r['speed'][f'speedup_b{b}']['warning']}" for r in rows if "speed" in r
            for b in (1, 32) if r["speed"].get(f"speedup_b{b}", {}).get("warning")]


def comparison_table(rows: list[dict], metric: str) -> str:
    teacher = best_teacher(rows, metric)
    lines = [f"| model | dev {metric} | parameters | latency b1 (ms) | latency b32 (ms) | speed-up b1 | speed-up b32 "
             "| % of teacher |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        kept = retained(r["metrics"][metric], teacher["metrics"][metric]) if teacher else None
        lines.append(f"| {r['name']} | {r['metrics'][metric]:.2f} | {r['speed']['parameters'] / 1e6:.1f}M | "
                     f"{r['speed']['latency_ms_b1']:.1f} | {r['speed']['latency_ms_b32']:.1f} | "
                     f"{_speedup(r['speed'], 1)} | {_speedup(r['speed'], 32)} | "
                     f"{'' if kept is None else f'{kept:.1f}%'} |")
    return "\n".join(lines)


def write_report(out: Path, report: dict, logger: RunLogger) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    metric = report["task"]["main_metric"]
    plot_losses(logger, out / "losses.png")
    teachers = ", ".join(f"`{t['path']}`" for t in report["teachers"]) + f" (combined: {report['combine']})" \
        if report.get("teachers") else f"`{report['teacher'] or 'none'}`"
    md = [f"# {report['name']}", "",
          f"Task **{report['task']['name']}**; teacher {teachers}; "
          f"student `{report['student']['init']}`; seed {report['seed']}; "
          f"{report['data']['train_examples']} training and {report['data']['dev_examples']} dev examples.", ""]
    rows = report["models"]
    if all("speed" in r for r in rows):
        plot_comparison(rows, metric, out / "comparison.png")
        md += [comparison_table(rows, metric), "",
               f"Latency: the models timed together, interleaved in rounds, at sequence length "
               f"{rows[0]['speed']['seq_len']}, {rows[0]['speed']['threads']} threads, fp32, on this run's machine: "
               "each latency is the median over rounds, each speed-up the median of per-round ratios to the first "
               "model with its 95 % interval (* : too wide to trust).", "",
               *[f"- Warning: {w}" for w in speed_warnings(rows)], "",
               "![teacher vs student](comparison.png)", ""]
    else:
        md += ["| model | " + " | ".join(rows[0]["metrics"]) + " |", "|---|" + "---:|" * len(rows[0]["metrics"])]
        md += [f"| {r['name']} | " + " | ".join(f"{v:.2f}" for v in r["metrics"].values()) + " |" for r in rows]
        md += [""]
    md += ["## Training", "", f"Best dev {metric} {report['training']['best_metric']} at step "
           f"{report['training']['best_step']} of stage {report['training']['best_stage']}; "
           f"{report['training']['seconds']:.0f} s.", "", "![loss terms per stage](losses.png)", "",
           "Every logged value: `metrics.csv`; TensorBoard: `tensorboard --logdir tensorboard`.", ""]
    if plot_teacher_weights(logger, out / "teachers.png"):
        md += ["## Teachers", "", "Each teacher's mean weight in the distillation loss per logged step"
               + (" and, under RL-KD, its selection rate" if report.get("teacher_selection") else "") + ".", "",
               "![teacher weights](teachers.png)", ""]
    if report.get("teacher_selection"):  # RL-KD: per teacher, what the policy did (its plugin saved the plot)
        from alembert.plugins.rl_kd_report import markdown

        md += markdown(report["teacher_selection"])
    if report.get("l2a") or report.get("augment"):  # generated examples: how made, and L2A's keep/drop decisions
        from alembert.plugins.l2a_report import markdown as generated_markdown

        md += generated_markdown(report.get("l2a") or report["augment"])
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")


# alembert's metric names as the Hub's metric ids, and display names (values are percentages, as alembert reports)
_HUB_METRICS = {"accuracy": ("accuracy", "Accuracy"), "f1": ("f1", "F1"),
                "matthews_corr": ("matthews_correlation", "Matthews correlation"),
                "pearson": ("pearsonr", "Pearson correlation"), "spearman": ("spearmanr", "Spearman correlation"),
                "entity_f1": ("f1", "Entity F1"), "entity_precision": ("precision", "Entity precision"),
                "entity_recall": ("recall", "Entity recall"), "tag_accuracy": ("accuracy", "Tag accuracy"),
                "exact_match": ("exact_match", "Exact match")}
# the built-in tasks of other kinds than sequence classification, as model-index datasets
_OTHER_DATASETS = {"conll2003": {"name": "CoNLL-2003", "type": "conll2003", "split": "validation"},
                   "squad": {"name": "SQuAD v1.1", "type": "rajpurkar/squad", "split": "validation"},
                   "squad-dev-split": {"name": "SQuAD v1.1 dev, its last 8 articles held out",
                                       "type": "squad-dev-split", "split": "dev"}}
_TASK_TYPES = {SEQUENCE: "Text Classification", TOKENS: "Token Classification", SPANS: "Question Answering"}
_GLUE_NAMES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B", "mnli": "MNLI",
               "mnli-mm": "MNLI (mismatched)", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}


def _kind(report: dict) -> str:
    return report["task"].get("kind", SEQUENCE)


def _dataset(report: dict) -> dict:
    """The model-index dataset entry: GLUE's hub id, config and split for a GLUE task, else the task's own name."""
    name = report["task"]["name"]
    spec = report.get("recipe", {}).get("task", name)
    if isinstance(spec, str) and name in _GLUE_NAMES:  # a built-in GLUE task, from local files or the hub
        config, split = name.split("-")[0], {"mnli": "validation_matched", "mnli-mm": "validation_mismatched"}
        return {"name": f"GLUE {_GLUE_NAMES[name]}", "type": "nyu-mll/glue", "config": config,
                "split": split.get(name, "validation")}
    if isinstance(spec, str) and name in _OTHER_DATASETS:
        return dict(_OTHER_DATASETS[name])
    if name.startswith("amazon-"):
        return {"name": f"Amazon multi-domain sentiment ({name[len('amazon-'):]})", "type": name, "split": "dev"}
    return {"name": name, "type": name, "split": "dev"}


def model_index(report: dict) -> list[dict]:
    """The student's dev metrics as the Hugging Face Hub's `model-index` metadata (one result: task, dataset,
    metrics), so the Hub shows them and tools read them (huggingface_hub's EvalResult)."""
    student = next(r for r in report["models"] if r["name"] == "student")
    metrics = [{"type": _HUB_METRICS.get(key, (key, key))[0], "value": round(float(value), 4),
                "name": f"{_HUB_METRICS.get(key, (key, key))[1]} (dev, %)"}
               for key, value in student["metrics"].items() if math.isfinite(value)]  # the Hub reads no NaN
    return [{"name": report["name"], "results": [{
        "task": {"type": PIPELINE_TAGS[_kind(report)], "name": _TASK_TYPES[_kind(report)]},
        "dataset": _dataset(report), "metrics": metrics}]}]


def model_card_metadata(report: dict) -> dict:
    """The model card's YAML front matter."""
    dataset = _dataset(report)
    metadata = {"library_name": "transformers", "pipeline_tag": PIPELINE_TAGS[_kind(report)],
                "tags": ["alembert", "distillation"]}
    if dataset["type"] == "nyu-mll/glue":
        metadata["datasets"] = [dataset["type"]]
    metadata["metrics"] = [_HUB_METRICS.get(key, (key,))[0] for key in report["task"]["metrics"]]
    metadata["model-index"] = model_index(report)
    return metadata


def write_model_card(student_dir: Path, report: dict) -> None:
    metric = report["task"]["main_metric"]
    student = next(r for r in report["models"] if r["name"] == "student")
    teacher = best_teacher(report["models"], metric)
    methods = "; ".join(f"{s['name']}: " + ", ".join(s["losses"]) for s in report["stages"])
    front = yaml.safe_dump(model_card_metadata(report), sort_keys=False, allow_unicode=True, width=10**6)
    lines = [
        "---", front.rstrip("\n"), "---", "", f"# {report['name']}", "",
        f"Student distilled by alembert from teacher `{report['teacher']}`." if report["teacher"]
        else f"Student distilled by alembert from teachers {', '.join(t['path'] for t in report['teachers'])} "
             f"(combined: {report['combine']})." if report.get("teachers")
        else "Fine-tuned by alembert without a teacher.", "",
        f"- **Method**: {methods}",
        f"- **Data**: task `{report['task']['name']}`, {report['data']['train_examples']} training examples "
        f"(limit {report['data']['train_limit']}, seed {report['seed']}), scored on {report['data']['dev_examples']} "
        "dev examples",
        f"- **Dev {metric}**: {student['metrics'][metric]:.2f}"
        + (f" (teacher {teacher['metrics'][metric]:.2f}{_kept(student, teacher, metric)})" if teacher else ""),
    ]
    if "speed" in student:
        sp = student["speed"]
        lines += [f"- **Size**: {sp['parameters'] / 1e6:.1f}M parameters"
                  + (f" (teacher {teacher['speed']['parameters'] / 1e6:.1f}M)" if teacher and "speed" in teacher else ""),
                  f"- **Speed**: {sp['latency_ms_b1']:.1f} ms at batch 1, {sp['latency_ms_b32']:.1f} ms at batch 32, "
                  f"sequence {sp['seq_len']}, {sp['threads']} CPU threads"
                  + (f" (teacher {teacher['speed']['latency_ms_b1']:.1f} / {teacher['speed']['latency_ms_b32']:.1f} ms)"
                     if teacher and "speed" in teacher else "")]
    lines += ["", f"Load it with `{auto_class(_kind(report)).__name__}.from_pretrained(path)`; alembert is not needed.",
              ""]
    (student_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")
