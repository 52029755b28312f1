"""Tests for alembert.tasks: real GLUE/Amazon files (skipped without the data), generic files,
strict errors for bad input, metrics, and the offline hub fallback."""

import json
import math
import sys

import numpy as np
import pytest

from alembert.errors import AlembertError
from alembert.tasks import TASK_NAMES, Example, get_task, resolve_data_dir
from alembert.tasks import base as tasks_base


def _data_dir():
    try:
        return resolve_data_dir(None)
    except AlembertError:
        return None


DATA = _data_dir()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # No test may reach the network: a missing file must fail fast instead of trying the hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --- real data -----------------------------------------------------------------------------------

REAL_COUNTS = [
    ("sst2", "glue/SST-2", "train", 67349),
    ("sst2", "glue/SST-2", "dev", 872),
    ("mrpc", "glue/MRPC", "train", 3668),
    ("mrpc", "glue/MRPC", "dev", 408),
    ("cola", "glue/CoLA", "train", 8551),
    ("cola", "glue/CoLA", "dev", 1043),
    ("rte", "glue/RTE", "train", 2490),
    ("rte", "glue/RTE", "dev", 277),
    ("wnli", "glue/WNLI", "train", 635),
    ("wnli", "glue/WNLI", "dev", 71),
    ("qnli", "glue/QNLI", "dev", 5463),
    ("stsb", "glue/STS-B", "train", 5749),
    ("stsb", "glue/STS-B", "dev", 1500),
    ("amazon-books", "amazon/books", "train", 1500),  # 1,700 in the file, 200 of them the test split
    ("amazon-books", "amazon/books", "test", 200),
    ("amazon-books", "amazon/books", "dev", 300),
]


def _need(folder):
    if DATA is None or not (DATA / folder).is_dir():
        pytest.skip(f"no {folder} under the data directory")


@pytest.mark.parametrize("name,folder,split,count", REAL_COUNTS)
def test_real_row_counts(name, folder, split, count):
    _need(folder)
    task = get_task(name)
    examples = task.load(split)
    assert len(examples) == count
    assert all(isinstance(e, Example) and e.label is not None for e in examples)
    assert all((e.text_b is not None) == task.is_pair for e in examples)


def test_real_details():
    _need("glue/MRPC")
    mrpc = get_task("MRPC").load("dev")
    assert mrpc[0].text_b.startswith('"The foodservice')  # quotes kept as text, not parsed
    cola_test = get_task("cola").load("test")
    assert len(cola_test) == 1063 and all(e.label is None for e in cola_test)
    stsb = get_task("STS-B").load("test")  # the STSbenchmark CSV test split carries gold scores
    assert len(stsb) == 1379 and all(0.0 <= e.label <= 5.0 for e in stsb)
    books = get_task("amazon-books").load("dev")
    assert {e.domain for e in books} == {"books"} and sum(e.label for e in books) == 150
    assert "\n" in books[0].text_a  # embedded newlines survive the CSV parse


def test_real_qnli_train_missing_is_clear():
    _need("glue/QNLI")
    with pytest.raises(AlembertError, match=r"QNLI/train\.tsv.*--data-dir"):
        get_task("qnli").load("train")


# --- names and properties ------------------------------------------------------------------------

@pytest.mark.parametrize("spec,name", [("sst2", "sst2"), ("SST-2", "sst2"), ("sst-2", "sst2"), ("STS-B", "stsb"),
                                       ("mnli-mm", "mnli-mm"), ("MNLI_MM", "mnli-mm"), ("Amazon-Books", "amazon-books")])
def test_name_aliases(spec, name):
    assert get_task(spec, "/nonexistent").name == name


def test_unknown_task_lists_names():
    with pytest.raises(AlembertError, match="known tasks: cola, sst2"):
        get_task("imdb")


def test_task_properties():
    assert "mnli-mm" in TASK_NAMES and "amazon-kitchen" in TASK_NAMES
    stsb, mnli, mrpc = get_task("stsb"), get_task("mnli"), get_task("mrpc")
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.main_metric == "pearson" and stsb.is_pair
    assert mnli.label_names == ("contradiction", "entailment", "neutral") and mnli.num_labels == 3
    assert mrpc.metrics == ("f1", "accuracy") and not mrpc.is_regression
    assert get_task("cola").metrics == ("matthews_corr",)
    assert "dev_mismatched" in mnli.splits


def test_amazon_other_domain(tmp_path):
    (tmp_path / "amazon" / "toys").mkdir(parents=True)
    (tmp_path / "amazon" / "toys" / "train.tsv").write_text('sentence\tlabel\n"Fun\n\tgreat toy"\t1\nbad\t0\n')
    examples = get_task("amazon-toys", tmp_path).load("train")
    assert examples == [Example("Fun\n\tgreat toy", None, 1, "toys"), Example("bad", None, 0, "toys")]
    with pytest.raises(AlembertError, match="unknown task 'amazon-games'"):
        get_task("amazon-games", tmp_path)


# --- generic files -------------------------------------------------------------------------------

def _csv(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_generic_csv_infers_sorted_labels(tmp_path):
    train = _csv(tmp_path, "train.csv", 'review,label\n"good, really",pos\nbad,neg\nok,neu\n')
    task = get_task({"name": "mine", "train": str(train), "text_columns": ["review"]})
    assert task.format == "csv" and task.label_names == ("neg", "neu", "pos") and task.metrics == ("accuracy",)
    assert task.load("train") == [Example("good, really", None, 2), Example("bad", None, 0), Example("ok", None, 1)]


def test_generic_numeric_labels_sort_by_value(tmp_path):
    train = _csv(tmp_path, "t.tsv", "text\tlabel\na\t10\nb\t2\nc\t1\n")
    task = get_task({"format": "tsv", "train": str(train), "text_columns": "text"})
    assert task.label_names == ("1", "2", "10")
    assert [e.label for e in task.load("train")] == [2, 1, 0]


def test_generic_tsv_pair_with_given_labels_and_unlabeled_test(tmp_path):
    _csv(tmp_path, "train.tsv", "q\ta\ty\nwho?\tme\tyes\nwhy?\tbecause\tno\n")
    _csv(tmp_path, "test.tsv", "q\ta\nwhen?\tnow\n")
    spec = {"format": "tsv", "train": "train.tsv", "test": "test.tsv", "text_columns": ["q", "a"],
            "label_column": "y", "labels": ["no", "yes"], "metrics": ["f1", "accuracy"]}
    task = get_task(spec, tmp_path)  # relative paths resolve against data_dir
    assert task.is_pair and task.main_metric == "f1"
    assert task.load("train")[0] == Example("who?", "me", 1)
    assert task.load("test") == [Example("when?", "now", None)]
    with pytest.raises(AlembertError, match="no 'dev' file"):
        task.load("dev")


def test_generic_jsonl_regression(tmp_path):
    lines = [{"s1": "a", "s2": "b", "score": 0.5}, {"s1": "c", "s2": "d", "score": "2"}]
    path = _csv(tmp_path, "train.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    task = get_task({"train": str(path), "text_columns": ["s1", "s2"], "label_column": "score",
                     "regression": True})
    assert task.is_regression and task.metrics == ("pearson", "spearman") and task.label_names is None
    assert [e.label for e in task.load("train")] == [0.5, 2.0]


def test_generic_jsonl_integer_labels(tmp_path):
    path = _csv(tmp_path, "d.jsonl", '{"t": "x", "label": 1}\n\n{"t": "y", "label": 0}\n')
    task = get_task({"format": "jsonl", "train": str(path), "text_columns": ["t"]})
    assert task.label_names == ("0", "1") and [e.label for e in task.load("train")] == [1, 0]


@pytest.mark.parametrize("spec,match", [
    ({"train": "x.csv"}, "text_columns"),
    ({"train": "x.xml", "text_columns": ["t"]}, "format"),
    ({"train": "x.csv", "text_columns": ["t"], "colour": 1}, "unknown key 'colour'"),
    ({"text_columns": ["t"]}, "at least one of"),
    ({"train": "x.csv", "text_columns": ["t"], "labels": ["a"]}, "two classes"),
    ({"train": "x.csv", "text_columns": ["t"], "labels": ["a", "b"], "metrics": ["pearson"]}, "metrics"),
])
def test_generic_spec_errors(spec, match):
    with pytest.raises(AlembertError, match=match):
        get_task(spec)


# --- limit and seed ------------------------------------------------------------------------------

def test_limit_seed_subset(tmp_path):
    rows = "".join(f"text {i},{i % 2}\n" for i in range(50))
    task = get_task({"train": str(_csv(tmp_path, "t.csv", "t,label\n" + rows)), "text_columns": ["t"]})
    full = task.load("train")
    a, b = task.load("train", limit=10, seed=3), task.load("train", limit=10, seed=3)
    assert a == b and len(a) == 10
    positions = [full.index(e) for e in a]
    assert positions == sorted(positions)  # file order preserved
    assert len({tuple(e.text_a for e in task.load("train", limit=10, seed=s)) for s in range(5)}) > 1
    assert task.load("train", limit=500) == full
    with pytest.raises(AlembertError, match="limit"):
        task.load("train", limit=0)
    with pytest.raises(AlembertError, match="unknown split 'validation'"):
        task.load("validation")


# --- bad input -----------------------------------------------------------------------------------

def _glue(tmp_path, folder, split, text, encoding="utf-8"):
    path = tmp_path / "glue" / folder / split
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


RTE_HEAD = "index\tsentence1\tsentence2\tlabel\n"


def test_bad_label_names_file_and_row(tmp_path):
    _glue(tmp_path, "RTE", "train.tsv", RTE_HEAD + "0\tA.\tB.\tentailment\n1\tC.\tD.\tmaybe\n")
    with pytest.raises(AlembertError) as e:
        get_task("rte", tmp_path).load("train")
    assert str(e.value).endswith("RTE/train.tsv, row 2: label 'maybe' is not one of entailment, not_entailment")


@pytest.mark.parametrize("body,match", [
    ("0\tA.\t \tentailment\n", r"row 1: text 'sentence2' is empty"),
    ("0\tA.\tB.\tentailment\n1\tA.\tB.\n", r"row 2: expected 4 fields .* found 3"),
    ("0\tA.\tB.\tentailment\n\n1\tA.\tB.\tentailment\n", r"row 2: expected 4 fields"),
])
def test_bad_rows(tmp_path, body, match):
    _glue(tmp_path, "RTE", "dev.tsv", RTE_HEAD + body)
    with pytest.raises(AlembertError, match=r"dev\.tsv, " + match):
        get_task("rte", tmp_path).load("dev")


def test_missing_column_names_found_columns(tmp_path):
    _glue(tmp_path, "SST-2", "train.tsv", "text\tlabel\nfine\t1\n")
    with pytest.raises(AlembertError, match=r"train\.tsv: column 'sentence' not found \(columns: text, label\)"):
        get_task("sst2", tmp_path).load("train")


def test_missing_file(tmp_path):
    with pytest.raises(AlembertError, match=r"amazon/books/dev\.tsv: file not found"):
        get_task("amazon-books", tmp_path).load("dev")
    with pytest.raises(AlembertError, match=r"nope\.csv: file not found"):
        get_task({"train": str(tmp_path / "nope.csv"), "text_columns": ["t"], "labels": [0, 1]}).load("train")


@pytest.mark.parametrize("text,match", [("", "empty file"), ("sentence\tlabel\n", "no data rows")])
def test_empty_files(tmp_path, text, match):
    _glue(tmp_path, "SST-2", "train.tsv", text)
    with pytest.raises(AlembertError, match=r"train\.tsv: " + match):
        get_task("sst2", tmp_path).load("train")


def test_undecodable_bytes(tmp_path):
    _glue(tmp_path, "SST-2", "dev.tsv", b"sentence\tlabel\ngood\t1\ncaf\xe9\t1\n")
    with pytest.raises(AlembertError, match=r"dev\.tsv, line 3 \(byte \d+\): .*expected UTF-8"):
        get_task("sst2", tmp_path).load("dev")


@pytest.mark.parametrize("score,match", [("nan", "not a finite number"), ("high", "not a number"),
                                         ("5.5", "outside 0.0..5.0")])
def test_bad_stsb_scores(tmp_path, score, match):
    _glue(tmp_path, "STS-B", "train.csv", f'A man.,"A man, sitting.",3.2\nA cat.,A dog.,{score}\n')
    with pytest.raises(AlembertError, match=r"STS-B/train\.csv, row 2: target .*" + match):
        get_task("stsb", tmp_path).load("train")


def test_generic_regression_target_not_a_number(tmp_path):
    path = _csv(tmp_path, "r.csv", "t,y\na,1.5\nb,\n")
    task = get_task({"train": str(path), "text_columns": ["t"], "label_column": "y", "regression": True})
    with pytest.raises(AlembertError, match=r"r\.csv, row 2: target '' is not a number"):
        task.load("train")


def test_bad_quoting(tmp_path):
    path = _csv(tmp_path, "q.csv", 't,label\n"fine",1\n"broken"x,0\n')
    task = get_task({"train": str(path), "text_columns": ["t"], "labels": [0, 1]})
    with pytest.raises(AlembertError, match=r"q\.csv, row 2"):
        task.load("train")


def test_jsonl_errors(tmp_path):
    bad_json = _csv(tmp_path, "a.jsonl", '{"t": "x", "label": "p"}\n{"t": "y", label: "n"}\n')
    with pytest.raises(AlembertError, match=r"a\.jsonl, line 2: not valid JSON"):
        get_task({"train": str(bad_json), "text_columns": ["t"], "labels": ["n", "p"]}).load("train")
    no_key = _csv(tmp_path, "b.jsonl", '{"t": "x", "label": "p"}\n{"text": "y", "label": "n"}\n')
    with pytest.raises(AlembertError, match=r"b\.jsonl, line 2: missing key 't' \(keys found: text, label\)"):
        get_task({"train": str(no_key), "text_columns": ["t"], "labels": ["n", "p"]}).load("train")
    no_label = _csv(tmp_path, "c.jsonl", '{"t": "x", "label": "p"}\n{"t": "y"}\n')
    with pytest.raises(AlembertError, match=r"c\.jsonl, line 2: missing key 'label'"):
        get_task({"train": str(no_label), "text_columns": ["t"]})  # label inference reads the file


# --- data directory and hub fallback ---------------------------------------------------------------

def test_resolve_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEMBERT_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path) == tmp_path
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("ALEMBERT_DATA")
    monkeypatch.chdir(tmp_path / ".")
    (tmp_path / "repo").mkdir()
    monkeypatch.setattr(tasks_base, "__file__", str(tmp_path / "repo" / "src" / "base.py"))
    with pytest.raises(AlembertError, match="no data directory: pass --data-dir DIR or set ALEMBERT_DATA"):
        resolve_data_dir(None)
    (tmp_path.parent / "shared" / "data").mkdir(parents=True, exist_ok=True)
    assert resolve_data_dir(None).resolve() == (tmp_path.parent / "shared" / "data").resolve()


def test_offline_hub_fallback_is_fast_and_clear(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # importing datasets here would be a bug
    with pytest.raises(AlembertError) as e:
        get_task("rte", tmp_path).load("train")
    msg = str(e.value)
    assert msg.startswith("rte: no file at ") and "RTE/train.tsv" in msg
    assert "(offline)" in msg and "--data-dir DIR with glue/RTE/train.tsv" in msg


# --- metrics -------------------------------------------------------------------------------------

def test_accuracy_from_logits():
    logits = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    assert get_task("sst2").compute_metrics(logits, np.array([0, 1, 1, 1])) == {"accuracy": 75.0}


def test_f1_and_mcc_known_confusion():
    # gold/pred give TP=2, TN=2, FP=1, FN=1: F1 = 4/6, MCC = (4 - 1) / sqrt(3*3*3*3) = 1/3.
    gold = np.array([1, 1, 1, 0, 0, 0])
    pred = np.eye(2)[[1, 1, 0, 0, 0, 1]]
    mrpc = get_task("mrpc").compute_metrics(pred, gold)
    assert list(mrpc) == ["f1", "accuracy"]
    assert mrpc["f1"] == pytest.approx(200 / 3) and mrpc["accuracy"] == pytest.approx(200 / 3)
    cola = get_task("cola").compute_metrics(pred, gold)
    assert cola["matthews_corr"] == pytest.approx(100 / 3)
    assert all(type(v) is float for v in {**mrpc, **cola}.values())


def test_regression_metrics():
    stsb = get_task("stsb")
    gold = np.array([0.0, 1.0, 2.5, 4.0])
    out = stsb.compute_metrics((2 * gold + 1).reshape(-1, 1), gold)
    assert out["pearson"] == pytest.approx(100.0) and out["spearman"] == pytest.approx(100.0)
    out = stsb.compute_metrics(np.array([1.0, 2.0, 4.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert out["spearman"] == pytest.approx(80.0)  # 1 - 6*2/(4*15)
    assert out["pearson"] == pytest.approx(80.0)
    assert not math.isnan(out["pearson"])
