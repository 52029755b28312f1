"""A run's folder and its neighbours (issue 21): names that would be the output folder itself, two runs of one
name at once, a resume that cannot prove its recipe, an unwritable teacher cache, stages that would train nothing,
what killed and failed runs leave behind, and the progress line in a log."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from alembert import api
from alembert.cli import main
from alembert.engine.plugins import Plugin
from alembert.errors import AlembertError
from alembert.pipelines.rundir import RunLock
from alembert.recipe import recipe_from_dict

SRC = Path(__file__).resolve().parents[1] / "src"


def _data(tmp_path, task, teacher, **changes) -> dict:
    data = {"name": "run", "task": task, "teacher": str(teacher), "output_dir": str(tmp_path / "out"),
            "student": {"init": "extract", "layers": 2}, "max_length": 16, "batch_size": 8, "speed": False,
            "cache_dir": str(tmp_path / "cache"),
            "stages": [{"name": "kd", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}]}]}
    data.update(changes)
    return data


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("name", [".", "", "..", "../other", ".hidden"])
def test_a_run_name_that_is_not_a_folder_of_its_own_is_refused(tmp_path, capsys, toy_task, tiny_teacher_dir, name):
    (tmp_path / "out" / "earlier-run").mkdir(parents=True)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_data(tmp_path, toy_task, tiny_teacher_dir, name=name)))
    capsys.readouterr()
    assert main(["distill", str(recipe), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recipe.yaml: name: expected a folder name of its own" in err[0]
    assert _files(tmp_path / "out") == {"earlier-run"}  # --overwrite deleted nothing


def test_a_second_run_of_the_same_name_refuses_while_the_first_runs(tmp_path, toy_task, tiny_teacher_dir):
    recipe = recipe_from_dict(_data(tmp_path, toy_task, tiny_teacher_dir))
    with RunLock(tmp_path / "out" / "run"):  # what the first run holds while it trains
        with pytest.raises(AlembertError, match=r"out/run: another run with this output name is in progress"):
            api.distill(recipe)
        assert _files(tmp_path / "out") == {".run.lock"}  # the second wrote nothing
    assert api.distill(recipe).path.is_dir() and not (tmp_path / "out" / ".run.lock").exists()


class _CrashAfter(Plugin):
    def after_step(self, ctx, parts):
        if ctx.step == 2:
            raise KeyboardInterrupt("simulated crash")


def test_resume_without_the_recipe_record_is_refused(tmp_path, toy_task, tiny_teacher_dir):
    recipe = recipe_from_dict(_data(tmp_path, toy_task, tiny_teacher_dir, checkpoint_every=1))
    with pytest.raises(KeyboardInterrupt):
        api.distill(recipe, plugins=[_CrashAfter()])
    partial = tmp_path / "out" / ".run.partial"
    (partial / "recipe.json").unlink()
    with pytest.raises(AlembertError, match=r"recipe\.json: missing, so the recipe the interrupted run was started "
                                            r"with is unknown .*pass --overwrite"):
        api.distill(recipe.model_copy(update={"seed": 7}), resume=True)
    (partial / "recipe.json").write_text("null")
    with pytest.raises(AlembertError, match=r"recipe\.json: expected the recipe's keys, found NoneType"):
        api.distill(recipe, resume=True)
    assert len(list((partial / "checkpoints").glob("ckpt-*"))) == 1  # kept for a --resume that can prove it


def test_an_unwritable_teacher_cache_is_one_line(tmp_path, toy_task, tiny_teacher_dir):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    stages = [{"name": "ild", "epochs": 2, "lr": 1e-3, "losses": [{"type": "hidden_mse"}]}]
    recipe = recipe_from_dict(_data(tmp_path, toy_task, tiny_teacher_dir, stages=stages,
                                    cache_dir=str(blocker / "cache")))
    with pytest.raises(AlembertError, match=r"blocker/cache: cannot write the teacher cache .*set cache_dir"):
        api.distill(recipe)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("stage, message", [
    ({"grad_accum": 20}, r"stages\.0: grad_accum 20 is more than the stage's 12 batches"),
    ({"freeze": ["bert", "classifier"]}, r"stages\.0\.freeze: .* matches every parameter of the student"),
])
def test_a_stage_that_would_train_nothing_is_refused(tmp_path, toy_task, tiny_teacher_dir, stage, message):
    stages = [{"name": "kd", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}], **stage}]
    with pytest.raises(AlembertError, match=message):
        api.distill(recipe_from_dict(_data(tmp_path, toy_task, tiny_teacher_dir, stages=stages)))
    assert not (tmp_path / "out").exists()  # the output folder it created is gone again


def test_the_temporary_folder_of_a_killed_cache_build_is_removed_by_the_next(tmp_path, toy_task, tiny_teacher_dir):
    cache = tmp_path / "cache"
    dead = cache / ".0123abcd.999999999.x1"  # a build of a process that no longer exists
    alive = cache / f".4567efgh.{os.getpid()}.x2"  # one of a process that still runs
    for folder in (dead, alive):
        folder.mkdir(parents=True)
        (folder / "hidden_1.npy").write_bytes(b"\0" * 1000)
    stages = [{"name": "ild", "epochs": 2, "lr": 1e-3, "losses": [{"type": "hidden_mse"}]}]
    api.distill(recipe_from_dict(_data(tmp_path, toy_task, tiny_teacher_dir, stages=stages)))
    assert not dead.exists() and alive.exists()


class _PoisonFirst(Plugin):
    def example_weights(self, out, ctx):
        return torch.full((out.batch.size,), float("nan"))


def test_a_run_that_fails_leaves_no_empty_output_folder(tmp_path, toy_task, tiny_teacher_dir):
    recipe = recipe_from_dict(_data(tmp_path, toy_task, tiny_teacher_dir, output_dir=str(tmp_path / "new" / "runs")))
    with pytest.raises(AlembertError, match="is nan"):
        api.distill(recipe, plugins=[_PoisonFirst()])
    assert not (tmp_path / "new" / "runs").exists()


def test_a_log_that_is_not_a_terminal_gets_a_progress_line(tmp_path, toy_task, tiny_teacher_dir):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_data(tmp_path, toy_task, tiny_teacher_dir)))
    env = dict(os.environ, PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "alembert", "distill", str(recipe)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("run:kd step ")]
    assert lines == [lines[-1]] and lines[-1].startswith("run:kd step 12/12 loss ")  # at the stage's end
    assert json.loads((tmp_path / "out" / "run" / "report.json").read_text())["training"]["optimizer_steps"] == 12
