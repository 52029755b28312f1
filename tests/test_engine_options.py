"""Engine speed options change how fast a student trains, not what it learns."""
import random

import torch
from safetensors.torch import load_file

from alembert import api
from alembert.data.encoded import EncodedExamples, StageData
from alembert.data.samplers import Shuffled
from alembert.recipe import recipe_from_dict
from alembert.tasks import Example
from conftest import WORDS, write_tokenizer


def _recipe(tmp_path, task, teacher_dir, name, **changes):
    data = {"name": name, "task": task, "teacher": str(teacher_dir), "output_dir": str(tmp_path / "out"),
            "student": {"init": "extract", "layers": 2}, "max_length": 16, "batch_size": 16, "speed": False,
            "teacher_cache": False,
            "stages": [{"name": "s", "epochs": 2, "lr": 1e-3, "eval_every": 3, "losses": [
                {"type": "hidden_mse"}, {"type": "attention_mse"}, {"type": "attention_kl"},
                {"type": "prediction", "alpha": 0.5}]}]}
    data.update(changes)
    return recipe_from_dict(data)


def test_eager_and_sdpa_attention_train_the_same_student(tmp_path, toy_task, tiny_teacher_dir):
    runs = [api.distill(_recipe(tmp_path, toy_task, tiny_teacher_dir, kernel, attention=kernel))
            for kernel in ("sdpa", "eager")]
    weights = [load_file(run.student_dir / "model.safetensors") for run in runs]
    assert max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]) < 1e-4
    assert runs[0].report["training"]["evaluations"] == runs[1].report["training"]["evaluations"]


def test_length_grouped_batches_pad_less_and_cover_every_example(tmp_path):
    rng = random.Random(0)
    examples = [Example(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))), None, 0)
                for _ in range(256)]
    data = EncodedExamples(examples, write_tokenizer(tmp_path / "tok"), max_length=32)

    stage = StageData({"task": data}, data.tokenizers.pad_ids())

    def padded_tokens(grouped):
        sampler = Shuffled(stage, 16, torch.Generator().manual_seed(3), group_by_length=grouped)
        batches = [stage.collate([stage[i] for i in indices]) for indices in sampler]
        assert sorted(i for b in batches for i in b.example_id.tolist()) == list(range(256))
        return sum(b.inputs()["input_ids"].numel() for b in batches)

    real = sum(data.lengths)
    assert padded_tokens(True) - real < (padded_tokens(False) - real) / 3


def test_fp32_and_bf16_recipes_run_in_one_process(tmp_path, toy_task, tiny_teacher_dir):
    fp32 = api.distill(_recipe(tmp_path, toy_task, tiny_teacher_dir, "fp32"))
    bf16 = api.distill(_recipe(tmp_path, toy_task, tiny_teacher_dir, "bf16", precision="bf16"))
    assert bf16.report["recipe"]["precision"] == "bf16"
    losses = [[row for row in (run.path / "metrics.csv").read_text().splitlines() if ",total," in row]
              for run in (fp32, bf16)]
    assert losses[0] and len(losses[0]) == len(losses[1]) and losses[0] != losses[1]  # bf16 really ran in bf16
