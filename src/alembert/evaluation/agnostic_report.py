"""report.md and the model card of a task-agnostic run (general distillation): no task, so no dev score; what was
distilled, from which teacher, on how much text, at what size, speed and cost. The student is a bare encoder."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from alembert.engine.logger import RunLogger
from alembert.evaluation.report import plot_losses


def _size_lines(report: dict) -> list[str]:
    rows = [r for r in report["models"] if "speed" in r]
    if not rows:
        return []
    lines = ["| model | parameters | latency b1 (ms) | latency b32 (ms) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['speed']['parameters'] / 1e6:.1f}M | {r['speed']['latency_ms_b1']:.1f} | "
              f"{r['speed']['latency_ms_b32']:.1f} |" for r in rows]
    return lines + [""]


def write_agnostic_report(out: Path, report: dict, logger: RunLogger) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot_losses(logger, out / "losses.png")
    sources = report["data"].get("sources", {})
    training = report["training"]
    md = [f"# {report['name']}", "",
          f"Task-agnostic (general) distillation from teacher `{report['teacher']}` into a student by "
          f"`{report['student']['init']}`, on {', '.join(f'{n} ({k} sentences)' for n, k in sources.items())}; "
          f"seed {report['seed']}. The student is an encoder without a head: fine-tune it on a task "
          "(`alembert finetune --model <run>/student`, or `alembert transfer`).", "",
          *_size_lines(report),
          "## Training", "", f"{training['optimizer_steps']} optimizer steps, {training['examples_seen']} examples, "
          f"{training['train_seconds']:.0f} s training and {training['cache_build_seconds']:.0f} s building the "
          "teacher cache.", "", "![loss terms per stage](losses.png)", "",
          "Every logged value: `metrics.csv`; TensorBoard: `tensorboard --logdir tensorboard`.", ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")


def write_agnostic_card(student_dir: Path, report: dict) -> None:
    front = yaml.safe_dump({"library_name": "transformers", "pipeline_tag": "feature-extraction",
                            "tags": ["alembert", "distillation", "task-agnostic"]}, sort_keys=False)
    methods = "; ".join(f"{s['name']}: " + ", ".join(s["losses"]) for s in report["stages"])
    student = next(r for r in report["models"] if r["name"] == "student")
    lines = ["---", front.rstrip("\n"), "---", "", f"# {report['name']}", "",
             f"A task-agnostic encoder distilled by alembert from `{report['teacher']}` on unlabeled text. It has no "
             "task head: fine-tune it on your task.", "", f"- **Method**: {methods}",
             f"- **Data**: {', '.join(f'{n}: {k} sentences' for n, k in report['data'].get('sources', {}).items())}"]
    if "speed" in student:
        sp = student["speed"]
        lines.append(f"- **Size**: {sp['parameters'] / 1e6:.1f}M parameters; {sp['latency_ms_b1']:.1f} ms at batch "
                     f"1, {sp['latency_ms_b32']:.1f} ms at batch 32 (sequence {sp['seq_len']}, {sp['threads']} CPU "
                     "threads)")
    lines += ["", "Load it with `AutoModel.from_pretrained(path)`, or `AutoModelForSequenceClassification` for a "
              "task (a fresh head); alembert is not needed.", ""]
    (student_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")
