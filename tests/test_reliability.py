"""Issue 21's classes of bad input, each tested at the depth it is fixed: the strict YAML reader, label rules,
training-set and split checks, model folders, checkpoints under a full disk, export into a folder in use, the
command line's numbers, the model card's metadata. The same classes run through the CLI in test_bad_input.py."""
from __future__ import annotations

import errno
import gc
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import SafetensorError

from alembert.engine import checkpoint as checkpoint_module
from alembert.engine.checkpoint import Checkpoints, check_run_state
from alembert.errors import AlembertError
from alembert.tasks import Example, check_labeled, check_training_labels, get_task
from alembert.yaml_file import MAX_DEPTH, MAX_NODES, read_yaml_mapping, safe_yaml_value

LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(8))


def _one_line(err) -> str:
    message = str(err.value)
    assert len(message.splitlines()) == 1, message
    return message


def _yaml_error(tmp_path, text: str) -> str:
    path = tmp_path / "file.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AlembertError) as err:
        read_yaml_mapping(path, "recipe", "recipe keys")
    message = _one_line(err)
    assert message.startswith(str(path))
    return message


# --- YAML: duplicate keys, depth, aliases, size (cases 4 and 15) -------------------------------------------------

@pytest.mark.parametrize("text, key, lines", [
    ("name: a\nstages: [1]\nteacher: t\nstages: [2]\n", "stages", (4, 2)),  # the KD recipe that ran as fine-tuning
    ("task:\n  train: a.csv\n  dev: b.csv\n  train: c.csv\n", "train", (4, 2)),  # nested
    ("stages:\n  - name: kd\n    losses: [{type: prediction, alpha: 1, alpha: 0}]\n", "alpha", (3, 3)),  # flow
    ("a: {true: 1, True: 2}\n", "True", (1, 1)),  # two spellings of one key
])
def test_a_duplicate_key_is_refused_at_any_depth_naming_both_lines(tmp_path, text, key, lines):
    message = _yaml_error(tmp_path, text)
    assert f"line {lines[0]}: key '{key}' appears twice" in message and f"first at line {lines[1]}" in message


def test_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {lr: 1, epochs: 2}\nstage: {<<: *b, lr: 3}\n")
    assert read_yaml_mapping(path, "recipe", "keys")["stage"] == {"lr": 3, "epochs": 2}


@pytest.mark.parametrize("text, expected", [
    ("a: " + "[" * 5000 + "]" * 5000, f"nested deeper than {MAX_DEPTH} levels"),
    ("a: " + "{b: " * 3000 + "1" + "}" * 3000, f"nested deeper than {MAX_DEPTH} levels"),
    ("".join(f"x{i}: &x{i} [{f'*x{i - 1}' if i else 1}]\n" for i in range(100)), f"deeper than {MAX_DEPTH} levels"),
    (LAUGHS, f"more than {MAX_NODES} values"),
    ("a: &a [1, *a]\n", "an alias refers to a value that contains it"),
    ("a: &a {b: *a}\n", "an alias refers to a value that contains it"),
])
def test_documents_built_to_exhaust_the_parser_are_refused(tmp_path, text, expected):
    assert expected in _yaml_error(tmp_path, text)


def test_a_large_file_is_refused_by_size_and_a_directory_is_named(tmp_path):
    assert "bytes, expected a recipe file of at most" in _yaml_error(tmp_path, "a: " + "x" * (2 << 20) + "\n")
    with pytest.raises(AlembertError, match="is a directory, expected a recipe file"):
        read_yaml_mapping(tmp_path, "recipe", "keys")


def test_set_values_go_through_the_same_guards():
    assert safe_yaml_value("3e-5", "--set lr=3e-5") == "3e-5"  # as yaml.safe_load reads it
    assert safe_yaml_value("[1, 2]", "--set x") == [1, 2]
    assert safe_yaml_value("[1, 2", "--set x") == "[1, 2"  # not YAML: the text itself, as --set always read it
    for value, expected in (("[" * 200 + "]" * 200, "nested deeper"), (LAUGHS.replace("\n", ", ").join("{}"),
                                                                         "more than"),
                            ("{a: 1, a: 2}", "appears twice"), ("x" * 70000, "characters, expected at most")):
        with pytest.raises(AlembertError) as err:
            safe_yaml_value(value, "--set k=v")
        assert _one_line(err).startswith("--set k=v: ") and expected in str(err.value)


def test_every_yaml_the_tool_reads_is_strict(tmp_path):
    """Recipes, pool files and task files all go through the strict reader."""
    from alembert.pipelines.pool import load_pool
    from alembert.recipe import load_recipe

    text = "name: a\nname: b\n"
    for loader, file in ((load_recipe, "r.yaml"), (load_pool, "p.yaml"), (get_task, "t.yaml")):
        path = tmp_path / file
        path.write_text(text)
        with pytest.raises(AlembertError, match=re.escape(f"{path}, line 2: key 'name' appears twice")):
            loader(str(path))


# --- JSON lines built to exhaust the parser (case 15) -------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("[" * 100_000 + "]" * 100_000, "JSON nested deeper than 64 levels"),  # Python's own parser: RecursionError
    ("[" * 500 + "]" * 500, "JSON nested deeper than 64 levels"),  # parses, then refused by depth
    ("1" * 5000, "not valid JSON (Exceeds the limit (4300 digits)"),  # ValueError, not a JSONDecodeError
])
def test_a_jsonl_line_nested_thousands_deep_is_refused(tmp_path, value, expected):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg", "x": %s}\n' % value)
    with pytest.raises(AlembertError) as err:
        get_task({"train": str(path), "text_columns": ["text"], "labels": ["neg", "pos"]}).load("train")
    assert _one_line(err).startswith(f"{path}, line 2: {expected}")


# --- labels: numbers compared as numbers, mixed labels named (case 5) ---------------------------------------------

def _task(tmp_path, labels_csv: str, **spec):
    (tmp_path / "train.csv").write_text("text,label\n" + labels_csv)
    return get_task({"train": str(tmp_path / "train.csv"), "text_columns": ["text"], **spec})


def test_numeric_labels_are_compared_as_numbers(tmp_path):
    task = _task(tmp_path, "good,1\nbad,0\nfine,1.0\nawful,0.0\ngreat,01\n")
    assert task.label_names == ("0", "1")
    assert [e.label for e in task.load("train")] == [1, 0, 1, 0, 1]
    explicit = _task(tmp_path, "good,1.0\nbad,0\n", labels=[0, 1])  # the same rule with a labels list
    assert [e.label for e in explicit.load("train")] == [1, 0]
    ordered = _task(tmp_path, "a,10\nb,2\nc,2.0\n")
    assert ordered.label_names == ("2", "10")
    with pytest.raises(AlembertError, match="distinct label values"):
        _task(tmp_path, "a,1\nb,0\n", labels=[1, "1.0", 0])


def test_text_labels_stay_text(tmp_path):
    assert _task(tmp_path, "a,pos\nb,neg\nc,Pos\n").label_names == ("Pos", "neg", "pos")


def test_mixed_numeric_and_text_labels_name_what_was_found(tmp_path):
    with pytest.raises(AlembertError) as err:
        _task(tmp_path, "a,1\nb,0\nc,pos\nd,1.0\n")
    assert "mixes numeric and text labels (found 4: 0, 1, 1.0, pos)" in _one_line(err)
    task = _task(tmp_path, "a,1\nb,0\nc,pos\n", labels=["0", "1", "pos"])  # stated: taken as written
    assert [e.label for e in task.load("train")] == [1, 0, 2]


def test_jsonl_number_labels(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0.0}\n{"text": "c", "label": "1"}\n')
    task = get_task({"train": str(path), "text_columns": ["text"]})
    assert task.label_names == ("0", "1") and [e.label for e in task.load("train")] == [1, 0, 1]
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": NaN}\n')
    with pytest.raises(AlembertError, match="line 2: label nan is not a finite number"):
        get_task({"train": str(path), "text_columns": ["text"]})


# --- a training set that cannot teach, a split that cannot be scored (cases 7 and 13) -----------------------------

def test_a_training_set_of_one_class_is_refused(tmp_path):
    task = _task(tmp_path, "good,pos\ngreat,pos\n", labels=["neg", "pos"])
    examples = task.load("train")
    with pytest.raises(AlembertError) as err:
        check_training_labels(examples, task)
    assert _one_line(err) == (f"{tmp_path / 'train.csv'}: the training set holds only the class 'pos' (2 examples); "
                              "expected examples of at least two classes (the task's: neg, pos)")
    with pytest.raises(AlembertError, match=r"^train.csv \(train_limit 2\): the training set holds only"):
        check_training_labels(examples, task, "train.csv (train_limit 2)")
    check_training_labels(examples + [Example("bad", None, 0)], task)  # two classes: fine


def test_a_constant_regression_target_is_refused(tmp_path):
    task = _task(tmp_path, "a,2.5\nb,2.5\n", regression=True)
    with pytest.raises(AlembertError, match=r"train.csv: every training target is 2.5 \(2 examples\)"):
        check_training_labels(task.load("train"), task)


def test_a_split_without_labels_is_refused_before_scoring(tmp_path):
    (tmp_path / "test.csv").write_text("text\ngood\nbad\n")
    task = _task(tmp_path, "a,pos\nb,neg\n", test=str(tmp_path / "test.csv"))
    examples = task.load("test")
    with pytest.raises(AlembertError) as err:
        check_labeled(examples, task, "test")
    assert _one_line(err).startswith(f"{tmp_path / 'test.csv'}: the test split has no labels to score (2 examples")
    with pytest.raises(AlembertError, match="task custom: the set of examples has no labels to score"):
        task.compute_metrics([[0.1, 0.9], [0.8, 0.2]], [None, None])  # the safety net under every scorer
    check_labeled(task.load("train"), task, "train")


# --- checkpoints: a full disk, a manifest or state of the wrong shape (cases 8 and 16) ----------------------------



@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a real full filesystem. Skipped where mounting is not permitted (not root, a container)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (a real full disk cannot be made here)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip() or done.returncode})")
    try:
        yield folder
    finally:
        gc.collect()  # tensors loaded from it may still map its files
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=False)  # detached now, freed once unused


@pytest.mark.parametrize("writer", ["safetensors", "torch.save"])
def test_a_real_full_disk_keeps_the_previous_checkpoint_and_leaves_nothing(small_disk, writer):
    checkpoints = Checkpoints(small_disk / "ck")
    first = checkpoints.save({"step": 0}, {"student": {"w": torch.zeros(1000)}})
    big = torch.zeros(1_000_000)  # 4 MB: does not fit, in the safetensors group or in state.pt
    state, tensors = ({"step": 1}, {"student": {"w": big}}) if writer == "safetensors" else \
        ({"step": 1, "big": big}, {"student": {"w": torch.ones(1000)}})
    with pytest.raises(AlembertError) as err:
        checkpoints.save(state, tensors)
    assert _one_line(err) == (f"{small_disk / 'ck' / 'ckpt-000002'}: cannot write the checkpoint (no space left on "
                              f"device); the previous checkpoint {first} is kept")
    assert [p.name for p in (small_disk / "ck").iterdir()] == [first.name]  # the temporary folder is gone
    assert checkpoints.latest()[1]["step"] == 0


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),  # torch.save, disk full
    OSError(errno.EIO, "Input/output error"),
])
@pytest.mark.parametrize("where", ["save_file", "torch_save", "sha256_file", "fsync_path"])
def test_every_kind_of_write_failure_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, failure, where):
    checkpoints = Checkpoints(tmp_path / "ck")
    first = checkpoints.save({"step": 0}, {"student": {"w": torch.zeros(2)}})

    def fail(*args, **kwargs):
        raise failure

    if where == "torch_save":
        monkeypatch.setattr(checkpoint_module.torch, "save", fail)
    else:
        monkeypatch.setattr(checkpoint_module, where, fail)
    monkeypatch.setattr(checkpoint_module, "LOW_SPACE", 0)  # this disk is not full: the error's own words count
    with pytest.raises(AlembertError) as err:
        checkpoints.save({"step": 1}, {"student": {"w": torch.ones(2)}})
    why = "Input/output error" if getattr(failure, "errno", None) == errno.EIO else \
        "RuntimeError: [enforce fail" if isinstance(failure, RuntimeError) else "no space left on device"
    assert f"cannot write the checkpoint ({why}" in _one_line(err) and f"{first} is kept" in str(err.value)
    assert [p.name for p in (tmp_path / "ck").iterdir()] == [first.name]


def test_an_interrupt_during_a_write_leaves_no_temporary_folder(tmp_path, monkeypatch):
    checkpoints = Checkpoints(tmp_path / "ck")
    checkpoints.save({"step": 0}, {"student": {"w": torch.zeros(2)}})

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", interrupt)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save({"step": 1}, {"student": {"w": torch.ones(2)}})
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["ckpt-000001"]


def _rewrite_manifest(path: Path, change) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps(change(manifest)))


@pytest.mark.parametrize("change, expected", [
    (lambda m: [m], "holds a list, expected an object"),
    (lambda m: dict(m, files=list(m["files"])), "has no 'files' object"),
    (lambda m: dict(m, files={}), "has no 'files' object"),
    (lambda m: dict(m, groups="student"), "has no 'groups' list"),
    (lambda m: dict(m, groups=["student", "other"]), "does not list other.safetensors"),
    (lambda m: dict(m, files={**m["files"], "state.pt": "abc"}), "entry 'state.pt' is not {bytes, sha256}"),
    (lambda m: dict(m, files={**m["files"], "../../x": {"bytes": 1, "sha256": "0"}}), "lists '../../x'"),
    (lambda m: 42, "holds a int"),
])
def test_a_manifest_of_the_wrong_shape_falls_back_to_the_checkpoint_before(tmp_path, caplog, change, expected):
    checkpoints = Checkpoints(tmp_path / "ck", keep=3)
    for i in range(2):
        checkpoints.save({"step": i}, {"student": {"w": torch.full((2,), float(i))}})
    _rewrite_manifest(checkpoints.newest(), change)
    assert checkpoints.latest()[1]["step"] == 0
    assert expected in caplog.text


def _run_state(**changes) -> dict:
    state = {"phase": "student", "stage": 0, "step": 3, "micro": 0, "running": {}, "metric": None,
             "epoch_micro": 0, "epoch_generator": torch.zeros(2), "accelerator_step": 0,
             "result": {}, "logger_rows": [], "rng": {}, "plugins": [], "sources": {}}
    state.update(changes)
    return state


@pytest.mark.parametrize("state, expected", [
    ([1, 2, 3], "state.pt holds a list, expected a mapping"),
    ({"step": 3}, "state.pt lacks phase, stage, micro"),
    (_run_state(micro=2), "state.pt lacks optimizer, scheduler"),
    (_run_state(stage="0"), "stage of type str"),
    (_run_state(result=[]), "result of type list"),
])
def test_a_state_that_is_not_a_runs_falls_back_to_the_checkpoint_before(tmp_path, caplog, state, expected):
    checkpoints = Checkpoints(tmp_path / "ck", keep=3, validate=check_run_state)
    checkpoints.save(_run_state(step=1), {"student": {"w": torch.zeros(2)}})
    checkpoints.save(state, {"student": {"w": torch.ones(2)}})
    path, found, _ = checkpoints.latest()
    assert found["step"] == 1 and path.name == "ckpt-000001"
    assert expected in caplog.text


def test_check_run_state_needs_the_student_weights():
    assert check_run_state(_run_state(), {"student": {}}) is None
    assert check_run_state(_run_state(), {"best": {}}) == "it has no student weights"


# --- the model card's metadata: the Hub's model-index -------------------------------------------------------------

def _report(task: str | dict, name: str, metrics: dict) -> dict:
    main = next(iter(metrics))
    return {"name": "my-student", "task": {"name": name, "main_metric": main, "metrics": list(metrics)},
            "teacher": "outputs/teacher/student", "stages": [{"name": "kd", "losses": ["prediction(alpha=0.5, T=2)"]}],
            "seed": 42, "data": {"train_examples": 100, "dev_examples": 20, "train_limit": None},
            "models": [{"name": "teacher", "metrics": {k: v + 1 for k, v in metrics.items()}},
                       {"name": "student", "metrics": metrics}], "recipe": {"task": task}}


@pytest.mark.parametrize("task, name, metrics, dataset", [
    ("sst2", "sst2", {"accuracy": 91.25}, {"name": "GLUE SST-2", "type": "nyu-mll/glue", "config": "sst2",
                                           "split": "validation"}),
    ("mnli-mm", "mnli-mm", {"accuracy": 80.0}, {"type": "nyu-mll/glue", "config": "mnli",
                                                "split": "validation_mismatched"}),
    ({"name": "reviews"}, "reviews", {"f1": 88.5, "accuracy": 90.0}, {"name": "reviews", "type": "reviews",
                                                                      "split": "dev"}),
    ("stsb", "stsb", {"pearson": 85.0, "spearman": float("nan")}, {"config": "stsb"}),
])
def test_the_model_card_carries_the_metrics_as_model_index(tmp_path, task, name, metrics, dataset):
    from huggingface_hub import ModelCard

    from alembert.evaluation.report import write_model_card

    write_model_card(tmp_path, _report(task, name, metrics))
    card = ModelCard.load(tmp_path / "README.md")  # the Hub's own parser of model cards
    front = yaml.safe_load((tmp_path / "README.md").read_text().split("---")[1])
    result = front["model-index"][0]["results"][0]
    assert front["model-index"][0]["name"] == "my-student" and result["task"]["type"] == "text-classification"
    assert dataset.items() <= result["dataset"].items()
    finite = {k: v for k, v in metrics.items() if v == v}
    results = card.data.eval_results
    assert [(r.metric_type, r.metric_value) for r in results] == [
        ({"matthews_corr": "matthews_correlation", "pearson": "pearsonr"}.get(k, k), v) for k, v in finite.items()]
    assert all(r.task_type == "text-classification" and r.dataset_type == result["dataset"]["type"]
               and r.dataset_split == result["dataset"]["split"] and r.metric_name.endswith("(dev, %)")
               for r in results)
    assert card.data.library_name == "transformers" and "# my-student" in card.text
