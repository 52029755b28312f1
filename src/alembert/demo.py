"""`make demo`: a teacher fine-tuned on SST-2, a TinyBERT-style 2-layer student, the same student trained
without a teacher, all scored on SST-2 dev in one table."""
from __future__ import annotations

import json
from pathlib import Path

from alembert import api
from alembert.errors import AlembertError
from alembert.evaluation.report import comparison_table
from alembert.recipe import load_recipe, without_teacher

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
MAX_LENGTH = 64


def run_demo(data_dir: str | None, output_dir: str, train_limit: int, overwrite: bool) -> dict:
    tinybert_yaml = RECIPES / "tinybert.yaml"
    if not tinybert_yaml.is_file():
        raise AlembertError(f"{tinybert_yaml}: the demo runs from a checkout of alembert (recipes/ not found)")
    out = Path(output_dir)
    common = [f"output_dir={out}", f"train_limit={train_limit}", f"max_length={MAX_LENGTH}"]
    if data_dir:
        common.append(f"data_dir={data_dir}")

    print(f"1/3 fine-tuning the teacher (all-MiniLM-L6-v2) on {train_limit} SST-2 training examples")
    teacher = api.finetune("sentence-transformers/all-MiniLM-L6-v2", "sst2", name="teacher", output_dir=str(out),
                           epochs=2, lr=1e-4, max_length=MAX_LENGTH, train_limit=train_limit, data_dir=data_dir,
                           overwrite=overwrite)
    print("2/3 distilling it into a 2-layer student: TinyBERT-style ILD stage, then prediction stage")
    tinybert = load_recipe(tinybert_yaml, common + ["name=tinybert-student", f"teacher={teacher.student_dir}"])
    distilled = api.distill(tinybert, overwrite=overwrite)
    print("3/3 training the same 2-layer student on the labels alone (no teacher)")
    baseline = api.distill(without_teacher(tinybert, "no-teacher-student"), overwrite=overwrite)

    rows = [dict(distilled.report["models"][0], name="teacher"),
            dict(distilled.report["models"][1], name="student (TinyBERT-style KD)"),
            dict(baseline.report["models"][0], name="student (no teacher)")]
    metric = distilled.report["task"]["main_metric"]
    table = comparison_table(rows, metric)
    summary = {"task": "sst2", "train_examples": train_limit, "metric": metric, "models": rows,
               "runs": {"teacher": str(teacher.path), "tinybert": str(distilled.path),
                        "no_teacher": str(baseline.path)}}
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "demo.md").write_text(
        f"# alembert demo: SST-2, {train_limit} training examples, dev set of 872\n\n{table}\n\n"
        f"Latency: median forward pass at sequence length {MAX_LENGTH}, fp32, this machine.\n"
        f"Reports: {distilled.path / 'report.md'}, {baseline.path / 'report.md'}\n", encoding="utf-8")
    print(table)
    print(f"report: {out / 'demo.md'}  (student: {distilled.student_dir})")
    return summary
