"""Unlabeled text sources: sentence files, tables with a text column, task train splits, limit/seed sampling,
one-line errors, and (integration) the real WikiText-2 file."""

import pytest

from alembert.data.encoded import Tokenizers
from alembert.data.sources import SourceContext, load_sources
from alembert.errors import AlembertError
from alembert.recipe import recipe_from_dict
from alembert.tasks import get_task, resolve_data_dir
from alembert.tasks.supplementary import split_sentences
from conftest import write_tokenizer

WIKI = """ = Lobster Story = 
 
 The European lobster lives in the eastern Atlantic Ocean . It is blue above and yellow below ! Short bit .
 
 = = Life cycle = = 
 
 Females carry their eggs for up to a year before they hatch . Why do the larvae swim to the surface ?
Too short
"""
WIKI_SENTENCES = [
    "The European lobster lives in the eastern Atlantic Ocean .",
    "It is blue above and yellow below !",
    "Females carry their eggs for up to a year before they hatch .",
    "Why do the larvae swim to the surface ?",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a missing task file must fail fast, never try the hub


def _texts(spec: dict, tmp_path, data_dir=None) -> list[tuple]:
    """(text_a, text_b, label) of every example of one source, as the run loads it."""
    tokenizers = Tokenizers(write_tokenizer(tmp_path / "tok"), (), 32)
    task = get_task({"name": "t", "train": "x.csv", "dev": "x.csv", "text_columns": ["text"], "labels": ["0", "1"]})
    source = load_sources({"s": _spec(spec)}, SourceContext(task, tokenizers, data_dir, 0))["s"]
    if hasattr(source, "texts"):
        return [(t, None, None) for t in source.texts(range(len(source)))]
    return [(e.text_a, e.text_b, e.label) for e in source.examples]


def _spec(spec: dict):
    data = {"name": "r", "task": "sst2", "teacher": "t", "student": {"layers": 1}, "sources": {"s": spec},
            "stages": [{"name": "x", "losses": [{"type": "prediction"}]}]}
    return recipe_from_dict(data).sources["s"]


def _text(path, **extra) -> dict:
    return {"type": "text", "files": [str(path)], **extra}


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_txt_drops_headings_and_short_fragments(tmp_path):
    out = _texts(_text(_write(tmp_path / "wiki.txt", WIKI)), tmp_path)
    assert [t for t, _, _ in out] == WIKI_SENTENCES
    assert [t for t, _, _ in _texts(_text(tmp_path / "wiki.txt", min_words=2), tmp_path)] == \
        WIKI_SENTENCES[:2] + ["Short bit ."] + WIKI_SENTENCES[2:] + ["Too short"]


def test_split_sentences_quotes_and_newlines():
    text = 'He said "it was over." Then he left the room quietly.\nA new line starts here now'
    assert split_sentences(text, 3) == ['He said "it was over."', "Then he left the room quietly.",
                                        "A new line starts here now"]


def test_tsv_text_column_split_into_sentences(tmp_path):
    # unquoted TSV with stray quotes in the text, like corpus/movie_reviews/reviews.tsv
    body = "fileid\tlabel\ttext\nneg/1\tneg\t\" quest \" is a very bad film . i did not like it at all .\n" \
           "pos/2\tpos\tok .\n"
    out = _texts(_text(_write(tmp_path / "r.tsv", body)), tmp_path)
    assert [t for t, _, _ in out] == ['" quest " is a very bad film .', "i did not like it at all ."]


def test_csv_sentence_column(tmp_path):
    body = 'id,sentence\n1,"One two three four five. Six seven, eight nine ten."\n'
    out = _texts(_text(_write(tmp_path / "s.csv", body)), tmp_path)
    assert [t for t, _, _ in out] == ["One two three four five.", "Six seven, eight nine ten."]


def test_table_without_text_column_lists_columns(tmp_path):
    path = _write(tmp_path / "x.tsv", "id\tbody\n1\tsome words in a body here .\n")
    with pytest.raises(AlembertError, match=r"x\.tsv: no column 'text' or 'sentence' \(columns: id, body\)$"):
        _texts(_text(path), tmp_path)


def test_file_without_usable_sentences(tmp_path):
    path = _write(tmp_path / "h.txt", " = Only A Heading = \n tiny bit .\n")
    with pytest.raises(AlembertError, match=r"h\.txt: no sentences of at least 5 words"):
        _texts(_text(path), tmp_path)


def test_relative_path_under_data_dir(tmp_path, monkeypatch):
    _write(tmp_path / "data" / "corpus" / "w.txt", WIKI)
    monkeypatch.chdir(tmp_path)
    out = _texts(_text("corpus/w.txt"), tmp_path, data_dir=tmp_path / "data")
    assert [t for t, _, _ in out] == WIKI_SENTENCES


def test_unknown_source(tmp_path):
    with pytest.raises(AlembertError, match=r"'nope\.txt': no such file \(tried nope\.txt, .*nope\.txt\)"):
        _texts(_text("nope.txt"), tmp_path, data_dir=tmp_path)
    with pytest.raises(AlembertError, match=r"unknown task 'wikipedia'"):
        _texts({"type": "task", "task": "wikipedia"}, tmp_path, data_dir=tmp_path)
    with pytest.raises(AlembertError, match=r"sources\.s\.files: .*data\.json is not a \.txt, \.tsv or \.csv file"):
        _texts(_text(_write(tmp_path / "data.json", "{}")), tmp_path)


@pytest.mark.parametrize("limit", [0, -1, 2.5])
def test_bad_limit(tmp_path, limit):
    with pytest.raises(AlembertError, match=r"sources\.s\.text\.limit"):
        _spec(_text("w.txt", limit=limit))


# --- task sources (a fake GLUE folder, as in test_tasks.py) --------------------------------------

def _glue(tmp_path, folder, split, text):
    return _write(tmp_path / "glue" / folder / split, text)


def test_pair_task_train_split_without_labels(tmp_path):
    rows = "".join(f"{i}\tPremise {i}.\tHypothesis {i}.\t{'entailment' if i % 2 else 'not_entailment'}\n"
                   for i in range(6))
    _glue(tmp_path, "RTE", "train.tsv", "index\tsentence1\tsentence2\tlabel\n" + rows)
    _glue(tmp_path, "RTE", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tDev only.\tNot used.\tentailment\n")
    out = _texts({"type": "task", "task": "rte"}, tmp_path, data_dir=tmp_path)
    assert [(a, b) for a, b, _ in out] == [(f"Premise {i}.", f"Hypothesis {i}.") for i in range(6)]
    assert all(label is None for _, _, label in out)


def test_single_task_limit_and_seed(tmp_path):
    rows = "".join(f"sentence number {i}\t{i % 2}\n" for i in range(40))
    _glue(tmp_path, "SST-2", "train.tsv", "sentence\tlabel\n" + rows)
    full = _texts({"type": "task", "task": "SST-2"}, tmp_path, data_dir=tmp_path)
    assert len(full) == 40 and all(label is None and b is None for _, b, label in full)
    a = _texts({"type": "task", "task": "sst2", "limit": 10}, tmp_path, data_dir=tmp_path)
    assert len(a) == 10
    positions = [full.index(e) for e in a]
    assert positions == sorted(positions)  # file order kept
    assert _texts({"type": "task", "task": "sst2", "limit": 400}, tmp_path, data_dir=tmp_path) == full


def test_task_missing_train_file_is_clear(tmp_path):
    with pytest.raises(AlembertError, match=r"SST-2/train\.tsv"):
        _texts({"type": "task", "task": "sst2"}, tmp_path, data_dir=tmp_path)


# --- real data -----------------------------------------------------------------------------------

@pytest.mark.integration
def test_real_wikitext_valid(tmp_path):
    try:
        data = resolve_data_dir(None)
    except AlembertError:
        pytest.skip("no data directory (../shared/data or $ALEMBERT_DATA)")
    if not (data / "corpus" / "wikitext-2" / "valid.txt").is_file():
        pytest.skip("no corpus/wikitext-2/valid.txt under the data directory")
    out = [t for t, _, _ in _texts(_text("corpus/wikitext-2/valid.txt", limit=100), tmp_path)]
    assert len(out) == 100
    assert all(t.strip() and len(t.split()) >= 5 for t in out)
    assert not any(t.startswith("=") or t.endswith("=") for t in out)
    assert out == [t for t, _, _ in _texts(_text("corpus/wikitext-2/valid.txt", limit=100), tmp_path)]
