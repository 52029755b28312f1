"""Tests for unlabeled supplementary data: sentence files, tables with a text column, task train splits,
limit/seed sampling, one-line errors, and (integration) the real WikiText-2 file."""

import pytest

from alembert.errors import AlembertError
from alembert.tasks import resolve_data_dir
from alembert.tasks.supplementary import load_supplementary, split_sentences

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


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_txt_drops_headings_and_short_fragments(tmp_path):
    out = load_supplementary(str(_write(tmp_path / "wiki.txt", WIKI)), None, 0)
    assert [e.text_a for e in out] == WIKI_SENTENCES
    assert all(e.text_b is None and e.label is None for e in out)
    assert [e.text_a for e in load_supplementary(str(tmp_path / "wiki.txt"), None, 0, min_words=2)] == \
        WIKI_SENTENCES[:2] + ["Short bit ."] + WIKI_SENTENCES[2:] + ["Too short"]


def test_split_sentences_quotes_and_newlines():
    text = 'He said "it was over." Then he left the room quietly.\nA new line starts here now'
    assert split_sentences(text, 3) == ['He said "it was over."', "Then he left the room quietly.",
                                        "A new line starts here now"]


def test_tsv_text_column_split_into_sentences(tmp_path):
    # unquoted TSV with stray quotes in the text, like corpus/movie_reviews/reviews.tsv
    body = "fileid\tlabel\ttext\nneg/1\tneg\t\" quest \" is a very bad film . i did not like it at all .\n" \
           "pos/2\tpos\tok .\n"
    out = load_supplementary(str(_write(tmp_path / "r.tsv", body)), None, 0)
    assert [e.text_a for e in out] == ['" quest " is a very bad film .', "i did not like it at all ."]
    assert all(e.label is None for e in out)


def test_csv_sentence_column(tmp_path):
    body = 'id,sentence\n1,"One two three four five. Six seven, eight nine ten."\n'
    out = load_supplementary(str(_write(tmp_path / "s.csv", body)), None, 0)
    assert [e.text_a for e in out] == ["One two three four five.", "Six seven, eight nine ten."]


def test_table_without_text_column_lists_columns(tmp_path):
    path = _write(tmp_path / "x.tsv", "id\tbody\n1\tsome words in a body here .\n")
    with pytest.raises(AlembertError, match=r"x\.tsv: no column 'text' or 'sentence' \(columns: id, body\)$"):
        load_supplementary(str(path), None, 0)


def test_file_without_usable_sentences(tmp_path):
    path = _write(tmp_path / "h.txt", " = Only A Heading = \n tiny bit .\n")
    with pytest.raises(AlembertError, match=r"h\.txt: no sentences of at least 5 words"):
        load_supplementary(str(path), None, 0)


def test_relative_path_under_data_dir(tmp_path, monkeypatch):
    _write(tmp_path / "data" / "corpus" / "w.txt", WIKI)
    monkeypatch.chdir(tmp_path)
    out = load_supplementary("corpus/w.txt", None, 0, data_dir=tmp_path / "data")
    assert [e.text_a for e in out] == WIKI_SENTENCES


def test_unknown_source(tmp_path):
    with pytest.raises(AlembertError, match=r"'nope\.txt': no such file \(tried nope\.txt, .*nope\.txt\); "
                                            r"expected a \.txt/\.tsv/\.csv file or a task name"):
        load_supplementary("nope.txt", None, 0, data_dir=tmp_path)
    with pytest.raises(AlembertError, match=r"'wikipedia': not a \.txt/\.tsv/\.csv file and not a task "
                                            r"\(unknown task 'wikipedia'"):
        load_supplementary("wikipedia", None, 0, data_dir=tmp_path)


@pytest.mark.parametrize("limit", [0, -1, 2.0, True])
def test_bad_limit(tmp_path, limit):
    with pytest.raises(AlembertError, match=r"^supplementary data: limit must be a positive integer, got "):
        load_supplementary(str(_write(tmp_path / "w.txt", WIKI)), limit, 0)


# --- task sources (a fake GLUE folder, as in test_tasks.py) --------------------------------------

def _glue(tmp_path, folder, split, text):
    return _write(tmp_path / "glue" / folder / split, text)


def test_pair_task_train_split_without_labels(tmp_path):
    rows = "".join(f"{i}\tPremise {i}.\tHypothesis {i}.\t{'entailment' if i % 2 else 'not_entailment'}\n"
                   for i in range(6))
    _glue(tmp_path, "RTE", "train.tsv", "index\tsentence1\tsentence2\tlabel\n" + rows)
    _glue(tmp_path, "RTE", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tDev only.\tNot used.\tentailment\n")
    out = load_supplementary("rte", None, 0, data_dir=tmp_path)
    assert [(e.text_a, e.text_b) for e in out] == [(f"Premise {i}.", f"Hypothesis {i}.") for i in range(6)]
    assert all(e.label is None for e in out)


def test_single_task_limit_and_seed(tmp_path):
    rows = "".join(f"sentence number {i}\t{i % 2}\n" for i in range(40))
    _glue(tmp_path, "SST-2", "train.tsv", "sentence\tlabel\n" + rows)
    full = load_supplementary("SST-2", None, 0, data_dir=tmp_path)
    assert len(full) == 40 and all(e.label is None and e.text_b is None for e in full)
    a = load_supplementary("sst2", 10, 3, data_dir=tmp_path)
    assert a == load_supplementary("sst2", 10, 3, data_dir=tmp_path) and len(a) == 10
    positions = [full.index(e) for e in a]
    assert positions == sorted(positions)  # file order kept
    assert len({tuple(e.text_a for e in load_supplementary("sst2", 10, s, data_dir=tmp_path))
                for s in range(5)}) > 1
    assert load_supplementary("sst2", 400, 3, data_dir=tmp_path) == full


def test_task_missing_train_file_is_clear(tmp_path):
    with pytest.raises(AlembertError, match=r"SST-2/train\.tsv"):
        load_supplementary("sst2", None, 0, data_dir=tmp_path)


# --- real data -----------------------------------------------------------------------------------

@pytest.mark.integration
def test_real_wikitext_valid():
    try:
        data = resolve_data_dir(None)
    except AlembertError:
        pytest.skip("no data directory (../shared/data or $ALEMBERT_DATA)")
    if not (data / "corpus" / "wikitext-2" / "valid.txt").is_file():
        pytest.skip("no corpus/wikitext-2/valid.txt under the data directory")
    out = load_supplementary("corpus/wikitext-2/valid.txt", 100, 0)
    assert len(out) == 100
    assert all(e.text_a.strip() and len(e.text_a.split()) >= 5 and e.label is None for e in out)
    assert not any(e.text_a.startswith("=") or e.text_a.endswith("=") for e in out)
    assert out == load_supplementary("corpus/wikitext-2/valid.txt", 100, 0)
