"""Toy data and tiny models for token classification and extractive QA: CoNLL column files whose tags follow the
words (learnable), SQuAD JSON whose answers are spans of contexts made of the tiny vocabulary."""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForTokenClassification

from conftest import WORDS, write_tokenizer

TAGS = ["O", "B-ACT", "I-ACT", "B-OBJ", "I-OBJ"]


def sentence_tags(words: list[str]) -> list[str]:
    """actor (and a following 'very') is an ACT entity, movie / film an OBJ entity, anything else O."""
    tags = []
    for i, word in enumerate(words):
        if word == "actor":
            tags.append("B-ACT")
        elif word == "very" and i and words[i - 1] == "actor":
            tags.append("I-ACT")
        elif word in ("movie", "film"):
            tags.append("B-OBJ")
        else:
            tags.append("O")
    return tags


def write_conll(path: Path, sentences: int, seed: int, docstart: bool = True) -> Path:
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
        lines += [f"{w} NN I-NP {t}" for w, t in zip(words, sentence_tags(words))] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_squad(path: Path, paragraphs: int, seed: int, articles: int = 2) -> Path:
    """Contexts of 6 to 40 words (so some are cut into several windows at a small max_length), one question each
    whose answer is a span of 1 to 3 words."""
    rng = random.Random(seed)
    data = []
    for a in range(articles):
        paras = []
        for p in range(paragraphs):
            words = [rng.choice(WORDS) for _ in range(rng.randint(6, 40))]
            i = rng.randrange(len(words))
            j = min(len(words), i + rng.randint(1, 3))
            text, start = " ".join(words[i:j]), len(" ".join(words[:i])) + (1 if i else 0)
            paras.append({"context": " ".join(words), "qas": [
                {"answers": [{"answer_start": start, "text": text}], "question": f"what {words[i]} is it",
                 "id": f"{seed}-{a}-{p}"}]})
        data.append({"title": f"article_{a}", "paragraphs": paras})
    path.write_text(json.dumps({"data": data, "version": "1.1"}), encoding="utf-8")
    return path


def token_task(root: Path, train: int = 48, dev: int = 16) -> dict:
    return {"name": "toy-ner", "kind": "token_classification", "train": str(write_conll(root / "train.txt", train, 1)),
            "dev": str(write_conll(root / "dev.txt", dev, 2)), "tags": list(TAGS)}


def qa_task(root: Path, train: int = 12, dev: int = 4) -> dict:
    return {"name": "toy-qa", "kind": "extractive_qa", "train": str(write_squad(root / "train.json", train, 1)),
            "dev": str(write_squad(root / "dev.json", dev, 2))}


def tiny_config(num_labels: int, layers: int = 4) -> BertConfig:
    return BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)


def tiny_tagger(seed: int = 0, layers: int = 4) -> BertForTokenClassification:
    torch.manual_seed(seed)
    return BertForTokenClassification(tiny_config(len(TAGS), layers))


def tiny_reader(seed: int = 0, layers: int = 4) -> BertForQuestionAnswering:
    torch.manual_seed(seed)
    return BertForQuestionAnswering(tiny_config(2, layers))


def save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    write_tokenizer(folder)
    return folder
