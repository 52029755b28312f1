"""`alembert distill` end to end on a tiny model, and the one-line errors of bad input."""
import json

import pytest
import yaml
from transformers import AutoModelForSequenceClassification

from alembert.cli import main
from conftest import write_tokenizer, tiny_bert


def _recipe(tmp_path, toy_task, teacher_dir, **changes):
    recipe = {
        "name": "tiny", "task": toy_task, "teacher": str(teacher_dir), "output_dir": str(tmp_path / "out"),
        "student": {"init": "extract", "extract": "uniform", "layers": 2},
        "max_length": 16, "batch_size": 16, "eval_batch_size": 32, "speed": True,
        "stages": [
            {"name": "ild", "epochs": 1, "lr": 1e-3, "losses": [
                {"type": "hidden_mse", "map": "uniform"}, {"type": "attention_mse", "map": "uniform"}]},
            {"name": "prediction", "epochs": 2, "lr": 1e-3, "eval_every": 3, "losses": [
                {"type": "prediction", "alpha": 0.5, "temperature": 2.0}]},
        ],
    }
    recipe.update(changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_distill_end_to_end(tmp_path, toy_task, tiny_teacher_dir, capsys):
    path = _recipe(tmp_path, toy_task, tiny_teacher_dir)
    assert main(["distill", str(path), "--set", "seed=3"]) == 0
    run = tmp_path / "out" / "tiny"
    printed = capsys.readouterr().out
    assert "% of teacher" in printed and str(run / "report.md") in printed
    for name in ("report.json", "report.md", "losses.png", "comparison.png", "metrics.csv", "student/README.md",
                 "student/model.safetensors", "student/config.json", "student/tokenizer.json"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").iterdir())
    report = json.loads((run / "report.json").read_text())
    assert report["seed"] == 3 and [m["name"] for m in report["models"]] == ["teacher", "student"]
    assert report["models"][1]["speed"]["parameters"] < report["models"][0]["speed"]["parameters"]
    assert report["training"]["best_stage"] == "prediction"
    csv_keys = {line.split(",")[2] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert {"hidden_mse", "attention_mse", "ce", "kd", "total", "lr", "dev_accuracy"} <= csv_keys
    card = (run / "student" / "README.md").read_text()
    assert str(tiny_teacher_dir) in card and "toy" in card and "parameters" in card and "ms at batch 1" in card
    result = yaml.safe_load(card.split("---")[1])["model-index"][0]["results"][0]  # the Hub's metadata
    assert result["metrics"][0] == {"type": "accuracy", "name": "Accuracy (dev, %)",
                                    "value": round(report["models"][1]["metrics"]["accuracy"], 4)}
    student = AutoModelForSequenceClassification.from_pretrained(run / "student")
    assert student.config.num_hidden_layers == 2


def test_same_seed_same_result(tmp_path, toy_task, tiny_teacher_dir):
    reports = []
    for name in ("a", "b"):
        path = _recipe(tmp_path, toy_task, tiny_teacher_dir, name=name, speed=False)
        assert main(["distill", str(path)]) == 0
        reports.append(json.loads((tmp_path / "out" / name / "report.json").read_text()))
    assert reports[0]["training"]["evaluations"] == reports[1]["training"]["evaluations"]


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_existing_output_is_refused_then_replaced_with_overwrite(tmp_path, toy_task, tiny_teacher_dir, capsys):
    path = _recipe(tmp_path, toy_task, tiny_teacher_dir, speed=False)
    keep = tmp_path / "out" / "tiny"
    keep.mkdir(parents=True)
    (keep / "mine.txt").write_text("precious")
    assert "output directory exists (pass --overwrite" in _error(capsys, ["distill", str(path)])
    assert (keep / "mine.txt").read_text() == "precious"
    assert main(["distill", str(path), "--overwrite"]) == 0
    assert (keep / "report.json").is_file() and not (keep / "mine.txt").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["tiny"]  # no temporary folders left


def test_bad_inputs_give_one_line(tmp_path, toy_task, tiny_teacher_dir, capsys):
    path = _recipe(tmp_path, toy_task, tiny_teacher_dir, speed=False)
    err = _error(capsys, ["distill", str(path), "--set", "stages.0.losses.0.map=explicit",
                          "--set", "stages.0.losses.0.layers=[0,2,9]"])
    assert "teacher layer 9 is out of range" in err
    err = _error(capsys, ["distill", str(path), "--set", "stages.0.losses.0.mapp=last"])
    assert "stages.0.losses.0.hidden_mse.mapp: unknown key" in err
    err = _error(capsys, ["distill", str(path), "--set", "student.layers=9"])
    assert "student.layers: 9 exceeds" in err
    err = _error(capsys, ["distill", str(path), "--set", f"teacher={tmp_path / 'missing'}"])
    assert "missing: no such directory" in err
    err = _error(capsys, ["distill", str(path), "--set", f"task.train={tmp_path / 'absent.csv'}"])
    assert "absent.csv" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_vocabulary_mismatch_when_extracting(tmp_path, toy_task, tiny_teacher_dir, capsys):
    other = tmp_path / "other"
    model = tiny_bert()
    model.save_pretrained(other)
    write_tokenizer(other, extra_words=("extra",))
    path = _recipe(tmp_path, toy_task, tiny_teacher_dir, speed=False)
    err = _error(capsys, ["distill", str(path), "--set", f"student.source={other}"])
    assert "vocabulary" in err and "differs from the teacher" in err


@pytest.mark.parametrize("where", ["before", "after"])  # --debug before the command or after it
def test_debug_shows_the_traceback_and_exits_2(tmp_path, capsys, where):
    argv = ["distill", str(tmp_path / "nope.yaml")]
    assert main(["--debug", *argv] if where == "before" else [*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "alembert.errors.AlembertError" in err
    assert err.splitlines()[-1] == f"alembert: error: {tmp_path / 'nope.yaml'}: recipe file not found"


def test_eval_with_a_task_file(tmp_path, toy_task, tiny_teacher_dir, capsys):
    task_file = tmp_path / "toy.yaml"
    spec = dict(toy_task, train="train.csv", dev="dev.csv")  # relative to the task file's folder
    task_file.write_text(yaml.safe_dump(spec))
    assert main(["eval", str(tiny_teacher_dir), "--task", str(task_file), "--speed", "--max-length", "32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 32 and 0 <= result["metrics"]["accuracy"] <= 100
    assert result["speed"]["parameters"] > 0
    err = _error(capsys, ["eval", str(tiny_teacher_dir), "--task", str(tmp_path / "nope.yaml")])
    assert "nope.yaml: task file not found" in err


def test_head_size_mismatch_is_refused(tmp_path, tiny_teacher_dir, capsys):
    stsb_like = tmp_path / "reg.csv"
    stsb_like.write_text("text,score\ngood movie,4.5\nbad film,1.0\n")
    task_file = tmp_path / "reg.yaml"
    task_file.write_text(yaml.safe_dump({"name": "reg", "train": "reg.csv", "dev": "reg.csv",
                                         "text_columns": ["text"], "label_column": "score", "regression": True}))
    err = _error(capsys, ["eval", str(tiny_teacher_dir), "--task", str(task_file)])
    assert "classification head has 2 labels, the task needs 1" in err




def test_finetune_from_a_headless_encoder_is_reproducible(tmp_path, toy_task):
    """A new head is initialised from the seed too, so fine-tuning a base encoder twice gives the same run."""
    from transformers import BertModel

    from alembert import api

    base = tmp_path / "base"
    BertModel(tiny_bert().config).save_pretrained(base)
    write_tokenizer(base)
    runs = [api.finetune(str(base), toy_task, name=name, output_dir=str(tmp_path / "out"), epochs=1, lr=1e-3,
                         batch_size=16, max_length=16, speed=False) for name in ("one", "two")]
    assert runs[0].report["training"]["evaluations"] == runs[1].report["training"]["evaluations"]
    first, second = (AutoModelForSequenceClassification.from_pretrained(r.student_dir) for r in runs)
    assert all((a == b).all() for a, b in zip(first.state_dict().values(), second.state_dict().values()))


# --- the command line itself: numbers, help, version (issue 21) ---------------------------------------------------

NUMERIC_FLAGS = [  # (command, flag, values refused): every number the command line reads
    ("finetune", "--epochs", ["0", "-1", "nan", "inf", "1e9", "x"]),
    ("finetune", "--lr", ["0", "nan", "inf", "-inf", "2"]),
    ("finetune", "--batch-size", ["0", "-3", "1.5", "2000000"]),
    ("finetune", "--max-length", ["4", "5000", "nan"]),
    ("finetune", "--seed", ["-1", "4294967296", "1.5"]),
    ("finetune", "--data-seed", ["-1"]),
    ("finetune", "--train-limit", ["0", "-5", "inf"]),
    ("finetune", "--downsample", ["0"]),
    ("finetune", "--flip-labels", ["-0.1", "1.5", "nan"]),
    ("finetune", "--imbalance", ["0.5", "inf", "nan"]),
    ("eval", "--max-length", ["0", "100000"]),
    ("eval", "--limit", ["0", "-1"]),
    ("export", "--max-length", ["3", "5000"]),
    ("export", "--opset", ["11", "100"]),
    ("export", "--limit", ["0"]),
    ("bench", "--seq-lens", ["0", "-64", "5000"]),
    ("bench", "--batch-sizes", ["0", "nan"]),
    ("bench", "--threads", ["0", "5000"]),
    ("bench", "--warmup", ["-1"]),
    ("bench", "--repeats", ["0"]),
    ("bench", "--limit", ["0"]),
    ("demo", "--train-limit", ["0", "nan"]),
    ("pareto", "--batch-size", ["0", "-1"]),
]


@pytest.mark.parametrize("command, flag, value", [(c, f, v) for c, f, values in NUMERIC_FLAGS for v in values])
def test_every_numeric_flag_is_range_checked_when_parsed(command, flag, value, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, f"{flag}={value}"])  # the = form: argparse takes "-inf" alone for an option
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1, err
    assert f"argument {flag}: expected " in err and f"got {value}" in err.replace("'", ""), err


def test_every_option_has_help_and_shows_its_default(capsys):
    from alembert.cli import _Help, _parser

    commands = _parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"finetune", "distill", "pool", "transfer", "search", "eval", "demo", "export", "bench",
                             "pareto"}
    shown = _Help("alembert")._get_help_string
    for name, parser in commands.items():
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.default not in (None, False, [], "==SUPPRESS=="):
                assert "default" in shown(action), (name, action.option_strings)
    finetune = " ".join(commands["finetune"].format_help().split())
    for shown in ("(default: 3.0)", "(default: 5e-05)", "(default: 32)", "(default: 42)", "(default: 128, or the"):
        assert shown in finetune
    bench = " ".join(commands["bench"].format_help().split())
    assert "(default: 64 128)" in bench and "(default: 1 32)" in bench
    assert "{train,dev,test}" in commands["eval"].format_help()
    assert "(default: 4000)" in " ".join(commands["demo"].format_help().split())


def test_version(capsys):
    from alembert import __version__

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"alembert {__version__}"


def test_max_length_defaults_to_the_models_limit_when_smaller(tmp_path, toy_task, tiny_teacher_dir, capsys):
    """A model of 64 positions is scored at 64 tokens by default; 65 given explicitly is refused."""
    task_file = tmp_path / "toy.yaml"
    task_file.write_text(yaml.safe_dump(toy_task))
    assert main(["eval", str(tiny_teacher_dir), "--task", str(task_file), "--limit", "4"]) == 0
    assert "at most 64" in _error(capsys, ["eval", str(tiny_teacher_dir), "--task", str(task_file),
                                           "--max-length", "65"])
