"""The same recipe under `accelerate launch` with 2 CPU processes (DDP over gloo) and as 1 process; a pool too.

The recipe's batch is the global batch: each of the 2 processes trains on half of it and DDP averages their
gradients, which is the 1-process gradient up to the order of floating-point sums. Dropout is off (each process
draws its own masks) and every toy sentence has the same length (each half-batch then averages its token losses
over as many tokens as the whole), so what is left to differ is that order. Tolerance: 1e-4 on every logged loss
(relative, or 1e-6 absolute) and every student weight (absolute); dev metrics equal. Measured: 4e-6 and 1e-5.
"""
import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from alembert.engine.loop import check_launch
from alembert.errors import AlembertError
from alembert.models.features import FeatureRequest, FeatureTap, TappedForward
from alembert.recipe import recipe_from_dict
from conftest import tiny_bert, write_sentiment_csv, write_tokenizer

SRC = Path(__file__).resolve().parents[1] / "src"
TOLERANCE = 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", TQDM_DISABLE="1", HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _launch_two(*alembert: str) -> subprocess.CompletedProcess:
    """`alembert ...` as 2 CPU processes under accelerate launch."""
    return _run(["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                 "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
                 "-m", "alembert", *alembert])


def _losses(run: Path) -> dict[tuple[str, int, str], float]:
    with open(run / "metrics.csv", encoding="utf-8") as f:
        return {(r["stage"], int(r["step"]), r["key"]): float(r["value"]) for r in csv.DictReader(f)
                if not r["key"].startswith("dev_") and r["key"] != "lr"}


def test_two_processes_match_one_at_the_same_global_batch(tmp_path):
    teacher = tiny_bert(seed=3)  # 4 layers, hidden 32, 4 heads
    teacher.config.hidden_dropout_prob = teacher.config.attention_probs_dropout_prob = 0.0  # students inherit it
    teacher.save_pretrained(tmp_path / "teacher")
    write_tokenizer(tmp_path / "teacher")
    write_sentiment_csv(tmp_path / "train.csv", 96, 1)  # 12 global batches of 8: no ragged last batch
    write_sentiment_csv(tmp_path / "dev.csv", 32, 2)
    task = {"name": "toy", "format": "csv", "train": str(tmp_path / "train.csv"), "dev": str(tmp_path / "dev.csv"),
            "text_columns": ["text"], "label_column": "label"}
    # an ILD stage whose losses leave the head and the last layer's feed-forward block without gradient, and whose
    # width projection trains too (its own DDP wrapper); then a prediction stage with accumulation and evaluations
    recipe = {"task": task, "teacher": str(tmp_path / "teacher"), "output_dir": str(tmp_path / "out"),
              "student": {"init": "spec", "layers": 2, "hidden": 16, "heads": 2}, "max_length": 16, "batch_size": 8,
              "speed": False,
              "stages": [{"name": "ild", "epochs": 2, "lr": 1e-3,
                          "losses": [{"type": "hidden_mse", "map": "skip"},
                                     {"type": "relation", "map": "last", "heads": 2}]},
                         {"name": "pred", "epochs": 8, "lr": 5e-3, "grad_accum": 2, "eval_every": 4, "warmup": 0,
                          "losses": [{"type": "prediction", "alpha": 0.2}]}]}
    for name in ("one", "two"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(dict(recipe, name=name)))

    _run(["-m", "alembert", "distill", str(tmp_path / "one.yaml")])
    _launch_two("distill", str(tmp_path / "two.yaml"))

    one, two = tmp_path / "out" / "one", tmp_path / "out" / "two"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one", "two"]  # one run each, nothing else
    losses_one, losses_two = _losses(one), _losses(two)
    assert losses_one.keys() == losses_two.keys() and len(losses_one) > 4
    for key, value in losses_one.items():
        assert losses_two[key] == pytest.approx(value, rel=TOLERANCE, abs=1e-6), key
    weights_one = load_file(one / "student" / "model.safetensors")
    weights_two = load_file(two / "student" / "model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_two[name], value, rtol=0, atol=TOLERANCE, msg=name)
    report_one, report_two = (json.loads((run / "report.json").read_text()) for run in (one, two))
    assert report_one["training"]["evaluations"] == report_two["training"]["evaluations"]
    assert report_one["training"]["examples_seen"] == report_two["training"]["examples_seen"] == 96 * 10
    print(f"largest differences: loss {max(abs(losses_two[k] / v - 1) for k, v in losses_one.items() if v):.1e} "
          f"(relative), weight {max((weights_two[k] - w).abs().max().item() for k, w in weights_one.items()):.1e}")
    # the run learned something, so the comparison is not between two untrained students
    assert report_one["training"]["best_metric"] > 60


def test_a_pool_under_launch_is_recorded_and_printed_once(tmp_path, toy_task, tiny_teacher_dir):
    from test_pool import _pool, _write

    path = _write(tmp_path, _pool(tmp_path, toy_task, tiny_teacher_dir))
    for state in ("training", "reused"):  # the pool built, then found again
        done = _launch_two("pool", str(path))
        assert done.stdout.count("| shallow | 2 |") == 1, done.stdout  # the main process prints the table
        assert done.stderr.count(f"teacher 2/2: shallow ({state})") == 1, done.stderr[-3000:]
    pool = json.loads((tmp_path / "out" / "toy-pool" / "pool.json").read_text())
    assert [t["reused"] for t in pool["teachers"]] == [True, True]
    assert all((tmp_path / "out" / "toy-pool" / t["name"] / "student" / "model.safetensors").is_file()
               for t in pool["teachers"])


def _recipe(teacher_dir, task) -> dict:
    return {"name": "r", "task": task, "teacher": str(teacher_dir), "student": {"layers": 1}, "batch_size": 8,
            "stages": [{"name": "s", "losses": [{"type": "prediction"}]}]}


def _state(kind: str = "MULTI_CPU", processes: int = 2) -> SimpleNamespace:
    return SimpleNamespace(distributed_type=DistributedType(kind), num_processes=processes)


@pytest.mark.parametrize("state, env, changes, message", [
    (_state(), {}, {"batch_size": 6}, "batch_size: 6 does not split across 4 processes"),
    (_state(), {}, {"plugins": [{"type": "rl_kd"}]}, "plugins: rl_kd learns in one process"),
    (_state(), {}, {"stages": [{"name": "s", "step": {"type": "meta"}, "losses": [{"type": "prediction"}]}]},
     "stages.0.step: step meta runs in one process"),
    (_state(), {}, {"stages": [{"name": "s", "unfreeze": {"every": 2}, "losses": [{"type": "prediction"}]}]},
     "stages.0.unfreeze: unfreeze runs in one process"),
    (_state("DEEPSPEED"), {}, {}, "distributed_type DEEPSPEED is not supported"),
    (_state("FSDP"), {}, {}, "distributed_type FSDP is not supported"),
    (_state(), {"ACCELERATE_MIXED_PRECISION": "fp16"}, {}, "mixed_precision fp16 is not used"),
])
def test_a_launch_the_loop_cannot_run_is_refused_in_one_line(monkeypatch, tiny_teacher_dir, toy_task, state, env,
                                                            changes, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if "batch_size" in changes:
        state.num_processes = 4
    recipe = recipe_from_dict({**_recipe(tiny_teacher_dir, toy_task), **changes})
    with pytest.raises(AlembertError, match=message):
        check_launch(recipe, state)


def test_one_process_or_plain_ddp_is_accepted(tiny_teacher_dir, toy_task):
    recipe = recipe_from_dict(_recipe(tiny_teacher_dir, toy_task))
    for state in (_state("NO", 1), _state("MULTI_CPU", 2), _state("MULTI_GPU", 8)):
        check_launch(recipe, state)


@pytest.mark.parametrize("logits_used", [True, False])
def test_the_ddp_forward_returns_the_logits_only_when_a_loss_reads_them(logits_used):
    model = tiny_bert(layers=2)
    tap = FeatureTap(model, FeatureRequest(hidden=frozenset({1})))
    batch = {"input_ids": torch.randint(5, model.config.vocab_size, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    features = TappedForward(tap, logits_used)(batch)
    assert features.logits.requires_grad is logits_used
    assert features.hidden[1].requires_grad
