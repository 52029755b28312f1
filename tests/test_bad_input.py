"""The bad-input matrix: data files, recipes, models and arguments, each through `alembert.cli.main`.

Every case must end with exit code 2 and one line on stderr that names the place (file and row or line, recipe
key, argument) and what was expected, no traceback, and every file that existed before exactly as it was.
"""
from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import pytest
import yaml

from alembert.cli import main
from conftest import tiny_bert, write_tokenizer

GOOD_CSV = "text,label\ngood movie,pos\nbad film,neg\ngreat plot,pos\nawful actor,neg\n"
LONG_TEXT = "good " * 1_000_000  # 5 MB in one field


class World:
    """The files of one case under tmp_path, made on demand: a tiny teacher, data, a task file, a recipe."""

    def __init__(self, root: Path):
        self.root = root
        self.out = root / "out"

    @cached_property
    def teacher(self) -> Path:
        return self.model("teacher")

    def model(self, name: str, num_labels: int = 2, extra_words: tuple[str, ...] = (), head: bool = True) -> Path:
        from transformers import BertModel

        folder = self.root / name
        model = tiny_bert(layers=2, num_labels=num_labels)
        (model if head else BertModel(model.config)).save_pretrained(folder)
        write_tokenizer(folder, extra_words)
        return folder

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def spec(self, train: str = GOOD_CSV, dev: str = GOOD_CSV, name: str = "train.csv", **changes) -> dict:
        """A task dict over train and dev files written here; `changes` edit the spec."""
        suffix = Path(name).suffix
        spec = {"name": "toy", "train": str(self.file(name, train)), "dev": str(self.file(f"dev{suffix}", dev)),
                "text_columns": ["text"], "label_column": "label", "labels": ["neg", "pos"]}
        spec.update(changes)
        return spec

    def task_file(self, **spec_args) -> str:
        return str(self.file("task.yaml", yaml.safe_dump(self.spec(**spec_args))))

    def finetune(self, task: str, *extra: str) -> list[str]:
        return ["finetune", "--model", str(self.teacher), "--task", task, "--output-dir", str(self.out),
                "--epochs", "1", "--batch-size", "4", "--max-length", "16", *extra]

    def recipe_data(self, **changes) -> dict:
        recipe = {
            "name": "run", "task": self.spec(), "teacher": str(self.teacher), "output_dir": str(self.out),
            "student": {"init": "extract", "layers": 1}, "max_length": 16, "batch_size": 4, "speed": False,
            "stages": [{"name": "kd", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction"}]},
                       {"name": "tune", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}]}],
        }
        recipe.update(changes)
        return recipe

    def distill(self, recipe: dict | str | None = None, *extra: str) -> list[str]:
        text = recipe if isinstance(recipe, str) else yaml.safe_dump(recipe or self.recipe_data())
        return ["distill", str(self.file("recipe.yaml", text)), *extra]


# --- the cases: each sets up its files and returns (argv, substrings the message must contain) -----------------

def truncated_row(w):
    return w.finetune(w.task_file(train="text,label\ngood movie,pos\nbad film\n")), \
        ["train.csv, row 2", "expected 2 fields (text, label), found 1"]


def wrong_delimiter(w):  # a TSV file declared as CSV: one wide column
    return w.finetune(w.task_file(train=GOOD_CSV.replace(",", "\t"), format="csv")), \
        ["train.csv: column 'text' not found", "tab-separated", "format"]


def unknown_label(w):
    return w.finetune(w.task_file(train=GOOD_CSV + "fine film,maybe\n")), \
        ["train.csv, row 5", "label 'maybe' is not one of neg, pos"]


def unknown_label_in_dev(w):  # dev is read before any training starts
    return w.finetune(w.task_file(dev="text,label\nfine,pos\nok,meh\n")), \
        ["dev.csv, row 2", "label 'meh' is not one of neg, pos"]


def nan_regression_target(w):
    return w.finetune(w.task_file(train="text,label\ngood,4.5\nbad,nan\n", labels=None, regression=True)), \
        ["train.csv, row 2", "target 'nan' is not a finite number"]


def empty_regression_target(w):
    return w.finetune(w.task_file(train="text,label\ngood,4.5\nbad,\n", labels=None, regression=True)), \
        ["train.csv, row 2", "target '' is not a number"]


def empty_file(w):
    return w.finetune(w.task_file(train="")), ["train.csv: empty file", "expected a header line and data rows"]


def header_only(w):
    return w.finetune(w.task_file(train="text,label\n")), \
        ["train.csv: no data rows", "expected at least one row after the header"]


def duplicate_header(w):
    return w.finetune(w.task_file(train="text,text,label\ngood,movie,pos\n")), \
        ["train.csv, line 1", "'text' appears more than once", "distinct column names"]


def non_utf8_bytes(w):
    task = w.task_file()
    w.file("train.csv", b"text,label\ngood,pos\ncaf\xe9 film,neg\n")
    return w.finetune(task), ["train.csv, line 3", "expected UTF-8"]


def very_long_csv_field(w):  # refused at the reader's field limit, long before any tokenizer sees it
    return w.finetune(w.task_file(train=f"text,label\ngood,pos\n{LONG_TEXT},neg\n")), \
        ["train.csv, row 2", "longer than 131072 characters", "unbalanced quote"]


def very_long_jsonl_text(w):
    lines = [json.dumps({"text": "good", "label": "pos"}), json.dumps({"text": LONG_TEXT, "label": "neg"})]
    return w.finetune(w.task_file(train="\n".join(lines) + "\n", dev="\n".join(lines[:1]) + "\n",
                                  name="train.jsonl")), \
        ["train.jsonl, line 2", "text 'text' has 5000000 characters, expected at most 131072"]


def jsonl_line_not_an_object(w):
    body = json.dumps({"text": "good", "label": "pos"}) + '\n["bad", "neg"]\n'
    return w.finetune(w.task_file(train=body, name="train.jsonl")), \
        ["train.jsonl, line 2", "expected a JSON object, found list"]


def unclosed_quote(w):
    return w.finetune(w.task_file(train='text,label\n"good movie,pos\nbad,neg\n')), \
        ["train.csv, row 1", "quoted field is still open", "unbalanced quote"]


def task_file_missing_data_file(w):  # a relative path is taken from the task file's folder
    task = w.file("task.yaml", yaml.safe_dump(w.spec(train=GOOD_CSV) | {"train": "nope.csv"}))
    return w.finetune(str(task)), [f"{w.root / 'nope.csv'}: file not found"]


def task_file_wrong_column(w):
    return w.finetune(w.task_file(text_columns=["sentence"])), \
        ["train.csv: column 'sentence' not found", "columns: text, label"]


def task_file_unknown_key(w):
    return w.finetune(w.task_file(label_colum="label")), \
        ["task spec: unknown key 'label_colum'", "expected keys"]


def task_name_unknown(w):
    return w.finetune("nosuchtask"), ["unknown task 'nosuchtask'", "known tasks: cola"]


def recipe_typo(w):
    recipe = w.recipe_data()
    recipe["stages"][1]["losses"][0]["temprature"] = 2
    return w.distill(recipe), \
        ["recipe.yaml: stages.1.losses.0.prediction.temprature: unknown key", "did you mean 'temperature'"]


def recipe_task_typo(w):
    recipe = w.recipe_data()
    recipe["task"]["trian"] = recipe["task"].pop("train")
    return w.distill(recipe), ["recipe.yaml: task.trian: unknown key", "did you mean 'train'"]


def recipe_wrong_type(w):
    recipe = w.recipe_data()
    recipe["stages"][0]["lr"] = "fast"
    return w.distill(recipe), ["recipe.yaml: stages.0.lr", "valid number", "'fast'"]


def recipe_loss_without_type(w):
    recipe = w.recipe_data()
    recipe["stages"][0]["losses"] = [{"alpha": 1.0}]
    return w.distill(recipe), ["recipe.yaml: stages.0.losses.0: missing key 'type'", "prediction, hidden_mse"]


def recipe_yaml_syntax_error(w):
    return w.distill("name: run\nstages:\n  - name: [kd\n"), ["recipe.yaml, line 4", "not valid YAML"]


def recipe_not_a_mapping(w):
    return w.distill("- name: run\n- stages: []\n"), \
        ["recipe.yaml: expected a mapping of recipe keys at the top level", "found a list"]


def recipe_non_utf8(w):
    argv = w.distill()
    w.file("recipe.yaml", b"name: run\nteacher: caf\xe9\n")
    return argv, ["recipe.yaml, line 2", "expected UTF-8"]


def recipe_missing(w):
    return ["distill", str(w.root / "nope.yaml")], ["nope.yaml: recipe file not found"]


def set_without_equals(w):
    return w.distill(None, "--set", "seed"), ["--set seed: expected key=value"]


def set_index_out_of_range(w):
    return w.distill(None, "--set", "stages.5.lr=1e-4"), \
        ["--set stages.5.lr=1e-4", "stages.5 does not exist", "expected an index 0..1"]


def set_inside_a_value(w):
    return w.distill(None, "--set", "name.first=x"), ["--set name.first=x", "not a mapping", "set name=VALUE"]


def missing_model_directory(w):
    return w.distill(w.recipe_data(teacher=str(w.root / "missing"))), ["missing: no such directory"]


def model_directory_without_config(w):
    (w.root / "empty_model").mkdir()
    return w.distill(w.recipe_data(teacher=str(w.root / "empty_model"))), \
        ["empty_model: directory has no config.json", "Hugging Face checkpoint"]


def teacher_head_size_mismatch(w):
    return w.distill(w.recipe_data(teacher=str(w.model("three_way", num_labels=3)))), \
        ["three_way: its classification head has 3 labels, the task needs 2"]


def student_vocabulary_mismatch(w):
    student = {"init": "extract", "layers": 1, "source": str(w.model("other", extra_words=("extra",)))}
    return w.distill(w.recipe_data(student=student)), \
        ["student.source", "vocabulary (24 tokens) differs from the teacher's (23)", "shares the teacher's tokenizer"]


def teacher_without_head(w):
    return w.distill(w.recipe_data(teacher=str(w.model("base", head=False)))), \
        ["base: no trained classification head", "fine-tuned"]


def eval_missing_model(w):
    return ["eval", str(w.root / "nope"), "--task", w.task_file()], ["nope: no such directory"]


def eval_unknown_split(w):
    return ["eval", str(w.teacher), "--task", w.task_file(), "--split", "validation"], \
        ["unknown split 'validation'", "expected one of train, dev, test"]


def existing_run_directory(w):
    w.file("out/run/mine.txt", "precious")
    return w.distill(), ["out/run: output directory exists", "--overwrite"]


def interrupted_run_without_resume(w):
    w.file("out/.run.partial/checkpoints/ckpt-000001/state.pt", b"an earlier attempt's checkpoint")
    return w.distill(), ["out/.run.partial: an interrupted run of this recipe is there", "--resume", "--overwrite"]


def resume_under_a_changed_recipe(w):
    from alembert.recipe import recipe_from_dict

    earlier = recipe_from_dict(w.recipe_data(seed=1, batch_size=8)).model_dump()
    w.file("out/.run.partial/recipe.json", json.dumps(earlier, default=str))
    return w.distill(None, "--resume"), ["different recipe (changed: batch_size, seed)", "undo the change"]


def unwritable_output_directory(w):
    if os.geteuid() == 0:  # root writes anywhere: make the path go through a regular file instead
        output = w.file("blocker", "a file, not a folder") / "runs"
    else:
        w.out.mkdir()
        w.out.chmod(0o555)
        output = w.out / "runs"
    return w.distill(w.recipe_data(output_dir=str(output))), ["cannot write the output directory"]


def flip_labels_out_of_range(w):
    return w.finetune(w.task_file(), "--flip-labels", "1.5"), \
        ["argument --flip-labels", "expected a fraction between 0 and 1, got 1.5"]


def batch_size_zero(w):
    return w.finetune(w.task_file(), "--batch-size", "0"), \
        ["argument --batch-size", "expected an integer from 1 to 1048576, got 0"]


def missing_argument(w):
    return ["finetune", "--model", str(w.teacher)], ["the following arguments are required: --task"]


# --- issue 21: what used to pass silently, end in a traceback, or say the wrong thing -----------------------------

def export_into_another_models_folder(w):  # used to overwrite its config and tokenizer: it loaded as this model
    other = w.model("other", extra_words=("extra",))
    return ["export", str(w.teacher), "--onnx", "--output", str(other)], \
        [f"output {other}: holds another model's files (", "model.safetensors", "tokenizer.json", "--overwrite"]


def recipe_duplicate_key(w):  # used to keep the second 'stages': a KD recipe ran as fine-tuning
    text = yaml.safe_dump(w.recipe_data(), sort_keys=False)
    text += "stages:\n- name: tune\n  losses: [{type: prediction, alpha: 0.0}]\n"
    line = text.count("\n") - 2
    return w.distill(text), [f"recipe.yaml, line {line}: key 'stages' appears twice", "first at line"]


def task_file_duplicate_nested_key(w):
    text = yaml.safe_dump({"name": "toy", "task": "x"}).replace("task: x\n", "") + \
        "train: train.csv\ndev: dev.csv\ntext_columns: [text]\nlabels: [neg, pos]\ntrain: dev.csv\n"
    w.file("train.csv", GOOD_CSV), w.file("dev.csv", GOOD_CSV)
    return w.finetune(str(w.file("task.yaml", text))), ["task.yaml, line 6: key 'train' appears twice",
                                                        "first at line 2"]


def recipe_is_a_directory(w):  # used to say "not found"
    (w.root / "recipes").mkdir()
    return ["distill", str(w.root / "recipes")], ["recipes: is a directory, expected a recipe file"]


def recipe_billion_laughs(w):
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9))
    return w.distill(yaml.safe_dump(w.recipe_data()) + laughs), ["recipe.yaml, line", "more than 100000 values"]


def recipe_nested_thousands_deep(w):  # used to end in a RecursionError
    return w.distill("name: run\nstudent: " + "[" * 5000 + "]" * 5000 + "\n"), \
        ["recipe.yaml, line 2: nested deeper than 64 levels"]


def recipe_recursive_alias(w):
    return w.distill("name: &a [run, *a]\n"), ["recipe.yaml, line 1", "an alias refers to a value that contains it"]


def jsonl_nested_thousands_deep(w):  # used to end in a RecursionError
    line = '{"text": "bad", "label": "neg", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"
    body = json.dumps({"text": "good", "label": "pos"}) + "\n" + line + "\n"
    return w.finetune(w.task_file(train=body, dev=body.splitlines()[0] + "\n", name="train.jsonl")), \
        ["train.jsonl, line 2: JSON nested deeper than 64 levels"]


def mixed_numeric_and_text_labels(w):  # used to make classes of whatever strings were there
    return w.finetune(w.task_file(train="text,label\ngood,1\nbad,0\nfine,pos\n", labels=None)), \
        ["train.csv: column 'label' mixes numeric and text labels (found 3: 0, 1, pos)", "labels: [...]"]


def teacher_without_tokenizer_files(w):  # used to load a tokenizer of special tokens: every word [UNK]
    folder = w.model("bare")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    return w.distill(w.recipe_data(teacher=str(folder))), [f"model {folder}: no tokenizer files", "tokenizer.json"]


def truncated_weights(w):  # used to end in a SafetensorError traceback
    folder = w.model("cut")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    return ["finetune", "--model", str(folder), "--task", w.task_file(), "--output-dir", str(w.out)], \
        [f"model {folder}/model.safetensors: not a valid safetensors file", "truncated or corrupted"]


def empty_weights(w):
    folder = w.model("empty_weights")
    (folder / "model.safetensors").write_bytes(b"")
    return w.distill(w.recipe_data(teacher=str(folder))), [f"{folder}/model.safetensors: empty file (0 bytes"]


def unknown_model_type(w):  # used to end in a ValueError traceback
    folder = w.model("odd")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, model_type="bret")))
    return w.distill(w.recipe_data(teacher=str(folder))), \
        [f"{folder}/config.json: unknown model_type 'bret' (did you mean 'bert'?"]


def cut_off_config(w):  # used to say "not a local directory and the hub cannot be reached"
    folder = w.model("cut_config")
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[: len(text) // 2])
    return ["eval", str(folder), "--task", w.task_file()], [f"{folder}/config.json: not valid JSON (", "cut off"]


def eval_split_without_labels(w):  # the split error offers 'test'; scoring it used to fail inside numpy
    task = w.task_file(test=str(w.file("test.csv", "text\ngood\nbad\n")))
    return ["eval", str(w.teacher), "--task", task, "--split", "test"], ["has no labels to score"]


def eval_max_length_beyond_positions(w):  # used to fail inside the model on the first long text
    return ["eval", str(w.teacher), "--task", w.task_file(), "--max-length", "100"], \
        ["--max-length: 100 tokens is more than model", "position embeddings cover 64 tokens", "at most 64"]


def export_max_length_beyond_positions(w):  # used to be cut to 64 silently
    return ["export", str(w.teacher), "--onnx", "--max-length", "100"], ["export max_length: 100 tokens is more"]


def bench_seq_len_beyond_positions(w):
    return ["bench", str(w.teacher), "--seq-lens", "32", "128"], ["--seq-lens: 128 tokens is more than model"]


def learning_rate_nan(w):  # used to train on nan
    return w.finetune(w.task_file(), "--lr", "nan"), ["argument --lr", "expected a finite number above 0", "got nan"]


def epochs_infinite(w):
    return w.finetune(w.task_file(), "--epochs", "inf"), ["argument --epochs", "got inf"]


def seed_negative(w):  # used to fail inside NumPy's seeding
    return w.finetune(w.task_file(), "--seed", "-1"), ["argument --seed", "expected an integer from 0 to 4294967295"]


def _kind_task(w, kind: str, train: str, dev: str, suffix: str, **spec) -> str:
    """A task file of another kind than sequence classification over train and dev files written here."""
    files = {split: str(w.file(f"{split}{suffix}", text)) for split, text in (("train", train), ("dev", dev))}
    return str(w.file("kind.yaml", yaml.safe_dump({"name": "kinds", "kind": kind, **files, **spec})))


def tag_outside_the_task_set(w):
    task = _kind_task(w, "token_classification", "good JJ O\nactor NN B-PER\n\nbad JJ B-LOC\n", "good JJ O\n",
                      ".txt", tags=["O", "B-PER", "I-PER"])
    return w.finetune(task), ["train.txt, line 4: tag 'B-LOC' is not one of O, B-PER, I-PER"]


def sentence_longer_than_max_length(w):  # token classification reads a sentence whole: no truncation, no window
    task = _kind_task(w, "token_classification", "actor NN B-PER\n\n" + "good JJ O\n" * 20, "good JJ O\n", ".txt",
                      tags=["O", "B-PER"])
    return w.finetune(task), ["train.txt, line 3: 20 words make 22 tokens", "more than max_length 16", "windows"]


def _squad(*paragraphs) -> str:
    return json.dumps({"data": [{"title": "T", "paragraphs": list(paragraphs)}], "version": "1.1"})


_PARAGRAPH = {"context": "the film was good", "qas": [
    {"question": "what was good", "id": "q", "answers": [{"answer_start": 4, "text": "film"}]}]}


def answer_offset_not_its_text(w):
    bad = {"context": "the film was good", "qas": [
        {"question": "how was it", "id": "q2", "answers": [{"answer_start": 2, "text": "good"}]}]}
    return w.finetune(_kind_task(w, "extractive_qa", _squad(_PARAGRAPH, bad), _squad(_PARAGRAPH), ".json")), \
        ["train.json, data[0].paragraphs[1].qas[0].answers[0]: answer_start 2 points at 'e fi' in the context, not "
         "at the answer 'good'"]


def empty_context(w):
    dev = _squad(_PARAGRAPH, {"context": "", "qas": []})
    return w.finetune(_kind_task(w, "extractive_qa", _squad(_PARAGRAPH), dev, ".json")), \
        ["dev.json, data[0].paragraphs[1]: empty context"]


CASES = [truncated_row, wrong_delimiter, unknown_label, unknown_label_in_dev, nan_regression_target,
         empty_regression_target, empty_file, header_only, duplicate_header, non_utf8_bytes, very_long_csv_field,
         very_long_jsonl_text, jsonl_line_not_an_object, unclosed_quote, task_file_missing_data_file,
         task_file_wrong_column, task_file_unknown_key, task_name_unknown, recipe_typo, recipe_task_typo,
         recipe_wrong_type, recipe_loss_without_type, recipe_yaml_syntax_error, recipe_not_a_mapping,
         recipe_non_utf8, recipe_missing, set_without_equals, set_index_out_of_range, set_inside_a_value,
         missing_model_directory, model_directory_without_config, teacher_head_size_mismatch,
         student_vocabulary_mismatch, eval_missing_model, eval_unknown_split, existing_run_directory,
         unwritable_output_directory, interrupted_run_without_resume, resume_under_a_changed_recipe,
         flip_labels_out_of_range, batch_size_zero, missing_argument,
         teacher_without_head,
         export_into_another_models_folder, recipe_duplicate_key, task_file_duplicate_nested_key,
         recipe_is_a_directory, recipe_billion_laughs, recipe_nested_thousands_deep, recipe_recursive_alias,
         jsonl_nested_thousands_deep, mixed_numeric_and_text_labels,
         teacher_without_tokenizer_files, truncated_weights, empty_weights, unknown_model_type, cut_off_config,
         eval_split_without_labels, eval_max_length_beyond_positions, export_max_length_beyond_positions,
         bench_seq_len_beyond_positions, learning_rate_nan, epochs_infinite, seed_negative,
         tag_outside_the_task_set, sentence_longer_than_max_length, answer_offset_not_its_text, empty_context]


def _snapshot(root: Path) -> dict:
    """Every file (hidden ones too) with its bytes and modification time, and every folder."""
    tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            tree[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = Path(folder, name)
            tree[os.path.relpath(path, root)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return tree


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse exits by itself
        return stop.code


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_bad_input_gives_one_line_and_changes_nothing(case, tmp_path, capsys):
    world = World(tmp_path)
    argv, expected = case(world)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        code = _exit_code(argv)
    finally:
        if world.out.is_dir():
            world.out.chmod(0o755)  # let pytest clean up after the unwritable case
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), err
    assert "Traceback" not in err
    for part in expected:
        assert part in lines[0], f"{part!r} not in {lines[0]!r}"
    assert _snapshot(tmp_path) == before, "a file was written, changed or removed"


def test_debug_shows_the_traceback_for_a_data_error_and_exits_2(tmp_path, capsys):
    world = World(tmp_path)
    assert main(world.finetune(world.task_file(train="text,label\ngood,pos\nbad\n"), "--debug")) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "row 2" in err.splitlines()[-1]


# --- inputs that look odd but are fine ----------------------------------------------------------------------

def test_a_bom_in_the_header_is_read_transparently(tmp_path):
    from alembert.tasks import get_task

    world = World(tmp_path)
    spec = world.spec(train="\ufefftext,label\ngood,pos\nbad,neg\n")
    assert [e.text_a for e in get_task(spec).load("train")] == ["good", "bad"]
    task_file = world.file("bom.yaml", "\ufeff" + yaml.safe_dump(spec))  # editors on Windows write these too
    assert get_task(str(task_file)).name == "toy"


def test_a_long_text_below_the_limit_is_cut_to_max_length(tmp_path):
    from alembert.data.encoded import EncodedExamples
    from alembert.tasks import get_task

    world = World(tmp_path)
    examples = get_task(world.spec(train=f"text,label\n{'good ' * 20_000},pos\nbad,neg\n")).load("train")
    encoded = EncodedExamples(examples, write_tokenizer(tmp_path / "tok"), max_length=16)
    assert encoded.lengths == [16, 3]
