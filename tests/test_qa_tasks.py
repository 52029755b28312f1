"""Extractive QA: the SQuAD reader and its checks, the article split of the dev file, windows with a stride and the
answers' tokens in them, span decoding across windows, EM/F1 as the official v1.1 script (checked by hand), and
the loss over start and end distributions."""
import json

import numpy as np
import pytest
import torch

from alembert.data.encoded import encode_examples
from alembert.data.spans import MAX_ANSWER_TOKENS, best_span, window_label
from alembert.engine.terms import SpanPredictionTerm, TermContext
from alembert.errors import AlembertError
from alembert.models.features import Features
from alembert.recipe import stage_from_dict
from alembert.tasks import get_task
from alembert.tasks.kinds import SPANS
from alembert.tasks.squad import SpanExample
from alembert.tasks.squad_metrics import normalise, squad_metrics
from conftest import WORDS, write_tokenizer


def _squad(tmp_path, paragraphs, name="train.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"data": [{"title": "T", "paragraphs": paragraphs}], "version": "1.1"}))
    return get_task({"kind": "extractive_qa", "train": str(path)})


def _qa(question="what film", answers=None, qid="q1"):
    return {"question": question, "id": qid,
            "answers": answers if answers is not None else [{"answer_start": 4, "text": "film"}]}


def test_squad_reader_keeps_every_answer(tmp_path):
    task = _squad(tmp_path, [{"context": "the film was good", "qas": [
        _qa(answers=[{"answer_start": 4, "text": "film"}, {"answer_start": 0, "text": "the film"}])]}])
    (example,) = task.load("train")
    assert task.kind == SPANS and task.num_labels == 2 and task.main_metric == "f1"
    assert example.label == ((4, "film"), (0, "the film")) and example.where.endswith("data[0].paragraphs[0].qas[0]")


@pytest.mark.parametrize("paragraph, match", [
    ({"context": "the film was good", "qas": [_qa(answers=[{"answer_start": 3, "text": "film"}])]},
     r"data\[0\].paragraphs\[0\].qas\[0\].answers\[0\]: answer_start 3 points at ' fil' in the context, not at the "
     r"answer 'film'"),
    ({"context": "  ", "qas": [_qa()]}, r"data\[0\].paragraphs\[0\]: empty context"),
    ({"context": "the film", "qas": [_qa(answers=[])]}, r"qas\[0\]: 'answers' is \[\] \(expected a non-empty list"),
    ({"context": "the film", "qas": [dict(_qa(), is_impossible=True)]}, r"qas\[0\]: an unanswerable question"),
    ({"context": "the film", "qas": [_qa(question=" ")]}, r"qas\[0\]: empty question"),
])
def test_bad_squad_files_name_the_question(tmp_path, paragraph, match):
    with pytest.raises(AlembertError, match=match):
        _squad(tmp_path, [paragraph]).load("train")


def test_squad_dev_split_is_the_dev_files_articles_40_and_8():
    task = get_task("squad-dev-split")
    train, dev = task.load("train"), task.load("dev")
    assert (len(train), len(dev)) == (8981, 1589)
    assert len({e.title for e in train}) == 40 and train[0].title == "Super_Bowl_50"
    assert sorted({e.title for e in dev}) == sorted(["Prime_number", "Rhine", "Scottish_Parliament", "Islamism",
                                                      "Imperialism", "United_Methodist_Church",
                                                      "French_and_Indian_War", "Force"])
    assert not {e.title for e in train} & {e.title for e in dev}
    assert get_task("squad").splits == ("train", "dev")  # the official files, as users have them


# ---- EM and F1, counted by hand --------------------------------------------------------------------------------

def test_normalisation_drops_case_punctuation_articles_and_extra_spaces():
    assert normalise("  The  Denver-Broncos, an  NFL team! ") == "denverbroncos nfl team"


def test_squad_scores_match_the_hand_count():
    predictions = ["the Denver Broncos!", "Broncos of Denver", "", "Carolina"]
    answers = [["Denver Broncos", "Broncos"],   # EM 1 (after normalisation), F1 1
               ["Denver Broncos"],              # words broncos/of/denver against denver/broncos: P 2/3, R 1, F1 0.8
               ["Santa Clara"],                 # empty prediction: 0, 0
               ["Carolina Panthers", "Panthers"]]  # best of F1 2/3 (P 1, R 1/2) and 0; EM 0
    scores = squad_metrics(predictions, answers)
    assert scores["exact_match"] == pytest.approx(100 * 1 / 4)
    assert scores["f1"] == pytest.approx(100 * (1 + 0.8 + 0 + 2 / 3) / 4)


# ---- windows -----------------------------------------------------------------------------------------------------

def _example(context_words, first, last, question="what film"):
    context = " ".join(context_words)
    start = len(" ".join(context_words[:first])) + (1 if first else 0)
    text = " ".join(context_words[first:last + 1])
    return SpanExample(question, context, ((start, text),), "q", "T", "train.json, data[0]")


def test_windows_overlap_by_the_stride_and_label_the_answer_where_it_lies(tmp_path):
    tokenizer = write_tokenizer(tmp_path / "tok")
    words = [WORDS[i % len(WORDS)] for i in range(30)]
    data = encode_examples([_example(words, 12, 13)], tokenizer, 16)
    # room for context: 16 - 2 question tokens - 3 special tokens = 11; stride min(16 // 3, 11 // 2) = 5
    spans = [[s for s in offsets if s is not None] for offsets in data.offsets]
    assert len(data) == 5 and all(len(s) == 11 for s in spans[:-1])
    for before, after in zip(spans, spans[1:]):
        assert before[-5:] == after[:5]  # consecutive windows share 5 context tokens
    context = data.examples[0].context
    for i in range(len(data)):
        label = data[i]["label"]
        covered = spans[i][0][0] <= data.examples[0].label[0][0] and spans[i][-1][1] >= data.examples[0].label[0][0] \
            + len(data.examples[0].label[0][1])
        if covered:
            first, last = data.offsets[i][label[0]], data.offsets[i][label[1]]
            assert context[first[0]:last[1]] == "is was"
        else:
            assert label == (0, 0)
    assert {data[i]["label"] != (0, 0) for i in range(len(data))} == {True, False}


def test_a_question_that_leaves_no_room_for_context_is_refused(tmp_path):
    tokenizer = write_tokenizer(tmp_path / "tok")
    with pytest.raises(AlembertError, match=r"train.json, data\[0\]: the question takes 14 tokens, which leaves no "
                                             r"room for its context in a window of max_length 16"):
        encode_examples([_example(["film"] * 5, 0, 0, question=" ".join(["film"] * 14))], tokenizer, 16)


def test_window_label_needs_the_whole_answer_inside():
    offsets = [None, None, (0, 3), (4, 8), (9, 12), None]  # [CLS] q [SEP]? the context tokens 2..4
    assert window_label((4, "film"), offsets) == (3, 3)
    assert window_label((4, "film was"), offsets) == (3, 4)
    assert window_label((4, "film was bad"), offsets) == (0, 0)  # ends beyond the window


def test_decoding_takes_the_best_span_over_every_window(tmp_path):
    tokenizer = write_tokenizer(tmp_path / "tok")
    words = [WORDS[i % len(WORDS)] for i in range(30)]
    data = encode_examples([_example(words, 12, 13)], tokenizer, 16)
    predictions = [np.zeros((len(w["input_ids"]), 2)) for w in data.student]
    context = [t for t, s in enumerate(data.offsets[1]) if s is not None]
    predictions[1][context[2], 0] = predictions[1][context[3], 1] = 3.0  # window 1: a span of score 6
    predictions[3][context[0], 0] = predictions[3][context[1], 1] = 4.0  # window 3: a span of score 8
    predictions[3][context[1] + 1, 0] = 7.0  # a later start: its best span scores 7, less than 8
    predictions[3][0, :] = 50.0  # the [CLS] position is never an answer
    first, last = data.offsets[3][context[0]], data.offsets[3][context[1]]
    assert data.decode(predictions) == [data.examples[0].context[first[0]:last[1]]]


def test_a_span_is_at_most_max_answer_tokens_long():
    offsets = [None] + [(2 * t, 2 * t + 1) for t in range(40)]
    logits = np.zeros((41, 2))
    logits[1, 0], logits[1 + MAX_ANSWER_TOKENS, 1] = 10.0, 10.0  # 31 tokens: too long
    logits[5, 1] = 1.0
    assert best_span(logits, offsets) == (11.0, 0, 9)  # start token 1, end token 5: characters 0..9


def test_every_held_out_answer_survives_the_windows_of_the_real_tokenizer():
    """With the real MiniLM tokenizer: each held-out question's labelled window tokens give back its answer text
    (EM 100 but for the one question whose first answer is longer than MAX_ANSWER_TOKENS)."""
    from alembert.models.loading import load_tokenizer

    task = get_task("squad-dev-split")
    data = encode_examples(task.load("dev"), load_tokenizer("sentence-transformers/all-MiniLM-L6-v2"), 384)
    predictions = []
    for label, encoding in zip(data.labels, data.student):
        logits = np.full((len(encoding["input_ids"]), 2), -5.0)
        if label != (0, 0):
            logits[label[0], 0] = logits[label[1], 1] = 5.0
        predictions.append(logits)
    scores = task.compute_metrics(data.decode(predictions), data.gold)
    assert scores["exact_match"] == pytest.approx(100 * 1588 / 1589)


# ---- the span prediction loss ------------------------------------------------------------------------------------

def test_span_losses_read_real_tokens_only():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    labels = torch.tensor([[3, 4], [2, 2]])
    student, teacher = torch.randn(2, 6, 2), torch.randn(2, 6, 2)

    def values(s, t, alpha):
        stage = stage_from_dict({"name": "s", "losses": [{"type": "prediction", "alpha": alpha}]})
        term = SpanPredictionTerm(stage.losses[0], TermContext("x", None, None, False, SPANS))
        return term.components(Features(s, mask), [Features(t, mask)], labels, torch.tensor([True, True]),
                               None)[0].values

    hard, soft = values(student, teacher, 0.0), values(student, teacher, 1.0)
    ce = torch.nn.functional.cross_entropy
    expected = (ce(student[1, :4, 0], labels[1, 0]) + ce(student[1, :4, 1], labels[1, 1])) / 2
    torch.testing.assert_close(hard[1], expected)
    padded_s, padded_t = student.clone(), teacher.clone()
    padded_s[1, 4:], padded_t[1, 4:] = 30.0, 0.0  # padding: what the live model gives there, and a cache's zeros
    torch.testing.assert_close(values(padded_s, padded_t, 0.0), hard)
    torch.testing.assert_close(values(padded_s, padded_t, 1.0), soft)
    p_t = teacher[1, :4].softmax(dim=0)
    kl = (p_t * (p_t.log() - student[1, :4].log_softmax(dim=0))).sum(dim=0).mean()
    torch.testing.assert_close(soft[1], kl)
