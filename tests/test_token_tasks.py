"""Token classification: CoNLL and JSON-lines readers, tags on first sub-tokens, entity F1 as the CoNLL script counts
it (checked against cases counted by hand), the per-token prediction loss."""
import json

import numpy as np
import pytest
import torch

from alembert.data.batch import IGNORE
from alembert.data.encoded import encode_examples
from alembert.engine.terms import TokenPredictionTerm, TermContext
from alembert.errors import AlembertError
from alembert.models.features import Features
from alembert.recipe import stage_from_dict
from alembert.tasks import get_task
from alembert.tasks.kinds import TOKENS
from alembert.tasks.tokens import TokenExample
from conftest import write_tokenizer
from kinds_data import TAGS


def _task(tmp_path, text: str, name="train.txt", **spec):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return get_task({"kind": "token_classification", "train": str(path), **spec})


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

"""


def test_conll_reader_skips_documents_and_takes_the_last_column(tmp_path):
    task = _task(tmp_path, CONLL)
    assert task.kind == TOKENS and task.label_names == ("O", "B-MISC", "B-ORG", "B-PER", "I-PER")
    first, second = task.load("train")
    assert first.words == ("EU", "rejects", "German") and first.where.endswith("train.txt, line 3")
    assert [task.label_names[t] for t in second.label] == ["B-PER", "I-PER"]


def test_jsonl_sentences_and_iob1_tags_read_alike(tmp_path):
    lines = [{"tokens": ["Peter", "Blackburn", "Paris"], "tags": ["I-PER", "I-PER", "I-LOC"]},
             {"tokens": ["the", "EU"], "tags": ["O", "I-ORG"]}]
    task = _task(tmp_path, "\n".join(map(json.dumps, lines)), "train.jsonl")
    assert task.format == "jsonl" and task.label_names == ("O", "I-LOC", "I-ORG", "I-PER")
    assert [e.words for e in task.load("train")] == [("Peter", "Blackburn", "Paris"), ("the", "EU")]


@pytest.mark.parametrize("text, match", [
    ("EU NNP B-ORG\nrejects VBZ\n", r"train.txt, line 2: found 2 columns \(expected 3 columns"),
    ("EU PER\n", r"train.txt, line 1: tag 'PER' is not O, B-TYPE or I-TYPE"),
    ("\n\n", r"train.txt: no sentences"),
])
def test_bad_conll_files_name_the_line(tmp_path, text, match):
    with pytest.raises(AlembertError, match=match):
        _task(tmp_path, text)


def test_a_tag_outside_the_given_set_names_its_line(tmp_path):
    task = _task(tmp_path, CONLL, tags=["O", "B-ORG", "B-MISC", "B-PER", "I-PER"])
    task.load("train")
    (tmp_path / "train.txt").write_text(CONLL.replace("I-PER", "I-LOC"))
    with pytest.raises(AlembertError, match=r"train.txt, line 8: tag 'I-LOC' is not one of O, B-ORG"):
        task.load("train")


def test_jsonl_tags_must_match_the_tokens(tmp_path):
    with pytest.raises(AlembertError, match=r"train.jsonl, line 1: 'tags' is \['O'\] \(expected a list of 2"):
        _task(tmp_path, json.dumps({"tokens": ["a", "b"], "tags": ["O"]}), "train.jsonl")


def test_conll2003_reads_the_shared_files():
    task = get_task("CoNLL-2003")
    counts = {split: len(task.load(split)) for split in task.splits}
    assert counts == {"train": 14041, "dev": 3250, "test": 3453}  # -DOCSTART- lines are not sentences
    assert task.label_names[:3] == ("O", "B-PER", "I-PER") and task.main_metric == "entity_f1"


# ---- entity F1, counted by hand ---------------------------------------------------------------------------------

GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-PER", "B-MISC", "O"]]
# gold entities: PER 0-1, LOC 3 | ORG 0, MISC 2-3 (4). Predicted: PER 0-1, ORG 3 | ORG 0, PER 1, MISC 2 (5).
# Right (type, first and last word): PER 0-1 and ORG 0: 2. Precision 2/5, recall 2/4, F1 = 2PR/(P+R) = 4/9.
# Words with the right tag: 3 + 2 of 8.
HAND = {"entity_f1": 400 / 9, "entity_precision": 40.0, "entity_recall": 50.0, "tag_accuracy": 62.5}


def _scores(gold, pred, tags):
    task = get_task({"kind": "token_classification", "train": "unused.txt", "tags": tags})
    ids = {t: i for i, t in enumerate(tags)}
    return task.compute_metrics([[ids[t] for t in s] for s in pred], [[ids[t] for t in s] for s in gold])


def test_entity_scores_match_the_hand_count():
    scores = _scores(GOLD, PRED, ["O", "B-PER", "I-PER", "B-LOC", "B-ORG", "B-MISC", "I-MISC"])
    assert scores == pytest.approx(HAND)


def test_iob1_scores_as_iob2():
    """The same entities written in IOB1 (I- starts an entity) count the same; B- between two adjacent entities
    of one type splits them."""
    to_iob1 = lambda s: ["I" + t[1:] if t.startswith("B-") else t for t in s]  # noqa: E731
    tags = ["O", "I-PER", "I-LOC", "I-ORG", "I-MISC"]
    assert _scores([to_iob1(s) for s in GOLD], [to_iob1(s) for s in PRED], tags) == pytest.approx(HAND)
    # gold: PER 0-1 and PER 2 (two entities); predicted: PER 0-2 (one); none right
    split = _scores([["I-PER", "I-PER", "B-PER"]], [["I-PER", "I-PER", "I-PER"]], ["O", "I-PER", "B-PER"])
    assert split["entity_precision"] == 0 and split["entity_recall"] == 0 and split["tag_accuracy"] == pytest.approx(
        200 / 3)


def test_words_without_a_prediction_count_as_o():
    task = get_task({"kind": "token_classification", "train": "unused.txt", "tags": ["O", "B-PER"]})
    assert task.compute_metrics([[1, None]], [[1, 1]])["entity_recall"] == 50.0


# ---- encoding: tags on first sub-tokens -------------------------------------------------------------------------

def _encoded(tmp_path, words, tags, max_length=16):
    tokenizer = write_tokenizer(tmp_path / "tok", ("##s",))
    example = TokenExample(tuple(words), tuple(TAGS.index(t) for t in tags), "train.txt, line 4")
    return encode_examples([example], tokenizer, max_length)


def test_a_words_tag_goes_on_its_first_sub_token_only(tmp_path):
    # [CLS] the film ##s actor [UNK] [SEP]; '\x07' makes no token at all
    data = _encoded(tmp_path, ["the", "films", "\x07", "actor", "zzz"], ["O", "B-OBJ", "O", "B-ACT", "B-OBJ"])
    item = data[0]
    assert item["label"] == [IGNORE, 0, 3, IGNORE, 1, 3, IGNORE]
    logits = np.zeros((7, len(TAGS)))
    logits[np.arange(7), [0, 0, 3, 1, 1, 4, 0]] = 1.0  # '##s' says B-ACT: not read
    assert data.decode([logits]) == [[0, 3, None, 1, 4]]  # the word with no token gets no prediction (read as O)
    batch = data.collate([item])
    assert batch.labels.shape == (1, 7) and batch.token_labels


def test_a_sentence_longer_than_max_length_is_refused(tmp_path):
    with pytest.raises(AlembertError, match=r"train.txt, line 4: 9 words make 11 tokens with the special tokens, "
                                             r"more than max_length 8"):
        _encoded(tmp_path, ["the"] * 9, ["O"] * 9, max_length=8)


# ---- the per-token prediction loss ------------------------------------------------------------------------------

def _term(alpha, kd="kl"):
    stage = stage_from_dict({"name": "s", "losses": [{"type": "prediction", "alpha": alpha, "temperature": 2.0,
                                                      "kd": kd}]})
    return TokenPredictionTerm(stage.losses[0], TermContext("x", None, None, False, TOKENS))


def test_token_losses_average_over_scored_positions_only():
    torch.manual_seed(0)
    labels = torch.tensor([[IGNORE, 1, IGNORE, 2, IGNORE], [IGNORE, 0, IGNORE, IGNORE, IGNORE]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    student, teacher = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    values = {}
    for alpha in (0.0, 1.0):
        parts = _term(alpha).components(Features(student, mask), [Features(teacher, mask)], labels,
                                        torch.tensor([True, True]), None)
        values[alpha] = parts[0].values
    ce = torch.nn.functional.cross_entropy
    expected = torch.stack([(ce(student[0, 1], labels[0, 1]) + ce(student[0, 3], labels[0, 3])) / 2,
                            ce(student[1, 1], labels[1, 1])])
    torch.testing.assert_close(values[0.0], expected)
    # what an ignored position holds (a later sub-token, padding, a cache's zeros) changes nothing
    changed_student, changed_teacher = student.clone(), teacher.clone()
    changed_student[labels == IGNORE] = 50.0
    changed_teacher[labels == IGNORE] = 0.0
    for alpha in (0.0, 1.0):
        again = _term(alpha).components(Features(changed_student, mask), [Features(changed_teacher, mask)], labels,
                                        torch.tensor([True, True]), None)[0].values
        torch.testing.assert_close(again, values[alpha])
    p_t, log_p_s = (teacher[1, 1] / 2).softmax(-1), (student[1, 1] / 2).log_softmax(-1)
    torch.testing.assert_close(values[1.0][1], 4 * (p_t * (p_t.log() - log_p_s)).sum())  # KL at T=2, times T^2
