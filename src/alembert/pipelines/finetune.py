"""Fine-tuning: a model trained on the labels alone, by the engine that trains the students (a teacher, or a
student's no-teacher baseline)."""
from __future__ import annotations

from pathlib import Path

from alembert.recipe import recipe_from_dict


def finetune_recipe(model: str, task, name: str | None = None, output_dir: str = "outputs", epochs: float = 3.0,
                    lr: float = 5e-5, batch_size: int = 32, max_length: int = 128, train_limit: int | None = None,
                    dev_limit: int | None = None, seed: int = 42, data_dir: str | None = None,
                    precision: str = "fp32", speed: bool = True, data_seed: int | None = None,
                    stress: dict | None = None, trust_remote_code: bool = False, **extra):
    """The one-stage recipe that fine-tunes `model` on `task` with labels alone; `extra` sets more recipe keys."""
    task_name = task if isinstance(task, str) else (task.get("name", "custom") if isinstance(task, dict) else
                                                    "+".join(map(str, task)))
    return recipe_from_dict({
        "name": name or f"finetune-{Path(str(model)).name}-{Path(task_name).stem}",
        "task": task, "teacher": None,
        "student": {"init": "checkpoint", "source": str(model)},
        "stages": [{"name": "finetune", "epochs": epochs, "lr": lr,
                    "losses": [{"type": "prediction", "alpha": 0.0}]}],
        "output_dir": output_dir, "batch_size": batch_size, "max_length": max_length, "train_limit": train_limit,
        "dev_limit": dev_limit, "seed": seed, "data_dir": data_dir, "precision": precision, "speed": speed,
        "data_seed": data_seed, "stress": stress, "trust_remote_code": trust_remote_code, **extra,
    }, "finetune")
