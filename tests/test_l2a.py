"""Learning to Augment (issue 19) and TinyBERT-style augmentation: word replacement by embedding neighbours, the
masked-LM head and its Markov-chain refill, the reinforced keep/drop selector, each recipe run on tiny random
models from the command line, and bad input as one line with exit 2."""
from __future__ import annotations

import csv
import json
import random
import threading
from types import SimpleNamespace

import pytest
import torch
import yaml

from alembert import api
from alembert.augment.cache import making
from alembert.augment.chain import refill, run_chain
from alembert.augment.mlm import choose_masks, encode_texts, maskable, train_head
from alembert.augment.neighbours import WORD, NeighbourReplacer
from alembert.augment.selector import CandidateSelector
from alembert.cli import main
from alembert.data.sources import GeneratedPool
from alembert.recipe import recipe_from_dict
from conftest import WORDS, tiny_bert, write_sentiment_csv, write_tokenizer


@pytest.fixture(autouse=True)
def one_thread():
    """The machines these tests share are busy: two threads contending are many times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tokenizer(tmp_path):
    return write_tokenizer(tmp_path / "tok")


TEXTS = ["the movie was very good", "it was a bad film", "the plot is not great", "an actor was awful",
         "a fine movie and a good plot", "the film was poor", "very good actor", "it is not bad"] * 4

# ---- neighbours ----------------------------------------------------------------------------------------------


def test_neighbour_replacement_keeps_the_words_count_and_puts_real_whole_word_tokens(tokenizer):
    model = tiny_bert()
    replacer = NeighbourReplacer(tokenizer, model.get_input_embeddings().weight, top_k=3, p=1.0)
    rng = random.Random(0)
    text = "The movie, it was very good!"
    out = replacer.variant(text, rng)
    assert out != text and out.endswith("!") and ", " in out  # punctuation and spacing kept
    before, after = WORD.findall(text), WORD.findall(out)
    assert len(before) == len(after)
    vocab = set(tokenizer.get_vocab())
    for old, new in zip(before, after):
        assert new in vocab and new.isalpha() and not new.startswith("[")  # a whole-word token of the vocabulary
        if new != old.lower():
            assert new in replacer.neighbours(old)
    # the neighbours are the nearest by cosine in the embedding table
    table = torch.nn.functional.normalize(model.get_input_embeddings().weight.detach(), dim=-1)
    good = tokenizer.convert_tokens_to_ids("good")
    best = replacer.neighbours("good")[0]
    scores = {w: float(table[good] @ table[tokenizer.convert_tokens_to_ids(w)]) for w in replacer.neighbours("good")}
    assert scores[best] == max(scores.values())
    assert replacer.neighbours("unknownword") == []  # not one whole-word token: left as it is
    assert replacer.variant("unknownword", rng) == "unknownword"

# ---- the masked-LM head and the chain ------------------------------------------------------------------------


@pytest.mark.parametrize("train_layers", [0, 1])
def test_training_the_masked_lm_lowers_its_held_out_loss_and_never_changes_the_teacher(tokenizer, train_layers):
    model = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lm, training = train_head(model, tokenizer, TEXTS, steps=100, batch_size=8, lr=1e-2, max_length=16, seed=0,
                              train_layers=train_layers)
    assert training.loss_after < training.loss_before - 0.2, training
    assert training.steps == 100 and training.seconds > 0 and len(training.losses) == 100
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the teacher is left as it was
    assert len(lm.head.state_dict()) == 5  # dense, LayerNorm, bias: the output layer is the embeddings, tied
    copied = lm.encoder is not model
    assert copied == bool(train_layers)
    if copied:  # its top layer trained, the rest of the copy did not
        trained = {k for k, v in lm.encoder.state_dict().items() if not torch.equal(v, before[k])}
        assert trained and all(k.startswith("bert.encoder.layer.3.") for k in trained), trained


def test_markov_refill_changes_the_masked_tokens_only(tokenizer):
    model = tiny_bert()
    lm, _ = train_head(model, tokenizer, TEXTS, steps=5, batch_size=8, max_length=16, seed=0)
    ids, mask = encode_texts(tokenizer, TEXTS[:6], 16, "cpu")
    generator = torch.Generator().manual_seed(0)
    masks = choose_masks(maskable(ids, mask, tokenizer), 0.5, generator)
    assert masks.any(1).all() and not (masks & ~maskable(ids, mask, tokenizer)).any()  # never [CLS], [SEP], padding
    with torch.no_grad():
        hidden = lm.encoder.eval()(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        every = lm.head(hidden)  # the head at every position; `logits` must give the same at the masked ones
    torch.testing.assert_close(lm.logits(ids, mask, masks), every[masks], rtol=1e-5, atol=1e-5)
    out = refill(lm, tokenizer, ids, mask, masks, 1.0, generator)
    assert torch.equal(out[~masks], ids[~masks])
    assert (out[masks] != ids[masks]).any()
    assert not torch.isin(out[masks], torch.tensor(tokenizer.all_special_ids)).any()  # real tokens only
    texts, changed = run_chain(lm, tokenizer, TEXTS[:6], 3, 0.3, 1.0, 16, generator)
    assert len(texts) == 6 and all(t and set(t.split()) <= set(WORDS) for t in texts)
    assert all(0 < c <= 1 for c in changed)


# ---- the selector ----------------------------------------------------------------------------------------------


def test_the_selector_learns_to_keep_what_is_rewarded():
    """A toy: every episode keeps or drops examples whose first feature is +1 or -1; the reward is the share of
    kept examples with +1 minus the share kept with -1. The policy must come to keep the +1 ones."""
    selector = CandidateSelector(3, lr=0.05, seed=0)
    start = {k: v.clone() for k, v in selector.policy.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    rates = []
    for _ in range(150):
        sign = torch.randint(0, 2, (32,), generator=generator).float() * 2 - 1
        states = torch.stack([sign, torch.randn(32, generator=generator), torch.randn(32, generator=generator)], -1)
        keep, probs, _ = selector.act(states)
        selector.end_episode(float((keep * sign).mean()))
        rates.append((float(probs[sign > 0].mean()), float(probs[sign < 0].mean())))
    assert any(not torch.equal(v, start[k]) for k, v in selector.policy.state_dict().items())
    good, bad = rates[-1]
    assert rates[0][0] == pytest.approx(0.5, abs=0.05) and good > 0.8 and bad < 0.2, rates[-1]


# ---- recipes on tiny random models -----------------------------------------------------------------------------


def _toy(tmp_path, name: str, rows: int, seed: int) -> dict:
    write_sentiment_csv(tmp_path / f"{name}-train.csv", rows, seed)
    write_sentiment_csv(tmp_path / f"{name}-dev.csv", 16, seed + 100)
    return {"name": name, "format": "csv", "train": str(tmp_path / f"{name}-train.csv"),
            "dev": str(tmp_path / f"{name}-dev.csv"), "text_columns": ["text"], "label_column": "label"}


def _recipe(tmp_path, teacher, plugin: dict, **changes) -> dict:
    data = {"name": "run", "task": _toy(tmp_path, "target", 24, 1), "teacher": str(teacher),
            "output_dir": str(tmp_path / "out"), "student": {"init": "extract", "layers": 2}, "max_length": 16,
            "batch_size": 8, "speed": False, "cache_dir": str(tmp_path / "cache"), "checkpoint_every": 0,
            "sources": {"aug": {"type": "generated"},
                        "reviews": {"type": "task", "task": _toy(tmp_path, "source", 40, 2), "labels": False}},
            "plugins": [plugin],
            "stages": [{"name": "kd", "epochs": 2, "lr": 1e-3, "data": "task+aug",
                        "losses": [{"type": "prediction", "alpha": 0.5, "temperature": 1.0}]}]}
    data.update(changes)
    return data


def _run_cli(tmp_path, data: dict) -> dict:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["distill", str(path)]) == 0
    return json.loads((tmp_path / "out" / "run" / "report.json").read_text())


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_augment_with_neighbours_trains_on_teacher_labelled_variants(tmp_path, tiny_teacher_dir):
    report = _run_cli(tmp_path, _recipe(tmp_path, tiny_teacher_dir, {"type": "augment", "n": 3, "p": 0.5}))
    rows = _jsonl(tmp_path / "out" / "run" / "augmented.jsonl")
    assert len(rows) == 24 * 3 and report["augment"]["generation"]["candidates"] == 72
    assert {r["origin"] for r in rows} == {"target"} and sorted({r["variant"] for r in rows}) == [0, 1, 2]
    assert all(len(r["teacher_probs"]) == 2 and abs(sum(r["teacher_probs"]) - 1) < 1e-3 for r in rows)
    with open(tmp_path / "target-train.csv", newline="") as handle:
        target = [row["text"] for row in csv.DictReader(handle)]
    assert all(len(WORD.findall(r["text_a"])) == len(WORD.findall(target[r["origin_id"]])) for r in rows)
    assert sum(r["text_a"] != target[r["origin_id"]] for r in rows) > len(rows) / 2
    assert report["training"]["examples_seen"] == 2 * (24 + 72)  # the generated examples were trained on


def test_the_teachers_outputs_on_generated_examples_are_cached_and_train_as_live_ones(tmp_path, tiny_teacher_dir,
                                                                                     monkeypatch):
    """The plugin seals its source once filled, so the teacher's outputs on it are cached like any source's; a
    prediction loss reads fp32 logits, so the cached run is the live one to float noise."""
    plugin = {"type": "augment", "n": 3, "p": 0.5}
    live = api.distill(recipe_from_dict(_recipe(tmp_path, tiny_teacher_dir, plugin, name="live",
                                                teacher_cache=False)))
    cached = api.distill(recipe_from_dict(_recipe(tmp_path, tiny_teacher_dir, plugin, name="cached")))
    assert live.report["source_caches"]["aug"]["reason"] == "switched off (teacher_cache: false)"
    info = cached.report["source_caches"]["aug"]
    assert info["enabled"] and info["bytes"] > 0 and info["shards"] == 1 and info["reason"] is None
    logged = [list(csv.DictReader(open(run.path / "metrics.csv", newline=""))) for run in (live, cached)]
    assert [(r["step"], r["key"]) for r in logged[0]] == [(r["step"], r["key"]) for r in logged[1]] != []
    assert [float(r["value"]) for r in logged[0]] == pytest.approx([float(r["value"]) for r in logged[1]], abs=1e-5)
    pool = GeneratedPool(SimpleNamespace(teachers=[]), 10)
    pool.seal()
    with pytest.raises(RuntimeError, match="sealed"):  # nothing may change it under its cache
        pool.add([])


def test_augment_with_the_masked_lm_chain_from_a_source(tmp_path, tiny_teacher_dir):
    plugin = {"type": "augment", "generator": "mlm", "n": 1, "from_sources": ["reviews"], "head_steps": 20,
              "steps": 2}
    report = _run_cli(tmp_path, _recipe(tmp_path, tiny_teacher_dir, plugin))
    info = report["augment"]["generation"]
    assert info["head"]["steps"] == 20 and info["head"]["masked_loss_after"] < info["head"]["masked_loss_before"]
    rows = _jsonl(tmp_path / "out" / "run" / "augmented.jsonl")
    assert {r["origin"] for r in rows} == {"target", "reviews"} and len(rows) == 24 + 40
    assert all(0 <= r["changed"] <= 1 for r in rows) and sum(r["changed"] > 0 for r in rows) > len(rows) / 2


def test_l2a_selects_generated_examples_by_a_reward_on_held_out_target_data(tmp_path, tiny_teacher_dir):
    plugin = {"type": "l2a", "n": 2, "from_sources": ["reviews"], "head_steps": 20, "steps": 2, "episode": 2,
              "log_every": 1, "holdout": 0.25}
    report = _run_cli(tmp_path, _recipe(tmp_path, tiny_teacher_dir, plugin))
    run = tmp_path / "out" / "run"
    l2a = report["l2a"]
    assert l2a["generation"]["heldout"] == 6 and l2a["generation"]["starts"] == {"target": 18, "sources": 40}
    assert report["source_caches"]["aug"]["enabled"]  # the selector reads the teacher's logits from its cache
    stage = l2a["selection"]["kd"]
    assert stage["policy_updates"] >= 3 and 0 < stage["keep"] < 1 and "keep_source" in stage
    rows = _jsonl(run / "augmented.jsonl")
    assert len(rows) == 2 * (18 + 40) and sum(r["drawn"] for r in rows) > 0
    assert all(r["kept"] <= r["drawn"] for r in rows)
    assert (run / "selector" / "selection.png").stat().st_size > 0
    assert (run / "selector" / "policy.safetensors").exists()
    history = json.loads((run / "selector" / "selector.json").read_text())["history"]["kd"]
    assert any("reward" in row for row in history)
    summary = (run / "report.md").read_text()
    assert "## Generated examples" in summary and "L2A, stage **kd**: kept" in summary


def test_l2a_with_its_selector_off_keeps_every_candidate_of_the_same_generation(tmp_path, tiny_teacher_dir):
    """The benchmark's 'generated, no selector' row: the same hold-out and candidates as L2A (read back from the
    cache, not made again), every one kept, no policy trained."""
    plugin = {"type": "l2a", "n": 1, "from_sources": ["reviews"], "head_steps": 5, "steps": 2, "episode": 2,
              "holdout": 0.25, "seed": 7}
    selected = api.distill(recipe_from_dict(_recipe(tmp_path, tiny_teacher_dir, plugin, name="selected")))
    off = api.distill(recipe_from_dict(_recipe(tmp_path, tiny_teacher_dir, {**plugin, "select": False}, name="off")))
    l2a = off.report["l2a"]
    assert l2a["select"] is False and l2a["selection"] == {} and l2a["kept_share"] is None
    assert l2a["generation"]["reused"] is True and l2a["generation"]["heldout"] == 6
    assert selected.report["l2a"]["selection"]["kd"]["policy_updates"] >= 1
    texts = [(r["origin"], r["text_a"]) for r in _jsonl(off.path / "augmented.jsonl")]
    assert texts == [(r["origin"], r["text_a"]) for r in _jsonl(selected.path / "augmented.jsonl")]
    assert len(texts) == 18 + 40 and off.report["training"]["examples_seen"] == 2 * (18 + 58)
    assert not (off.path / "selector").exists() and "selector off" in (off.path / "report.md").read_text()


# ---- bad input, resume ---------------------------------------------------------------------------------------


def _bad(tmp_path, teacher) -> dict:
    l2a = {"type": "l2a", "from_sources": ["reviews"], "head_steps": 2}
    no_stage = _recipe(tmp_path, teacher, {"type": "augment"})
    no_stage["stages"][0]["data"] = "task"
    return {
        "l2a without a source": (_recipe(tmp_path, teacher, {"type": "l2a"}),
                                 "from_sources: Value error, l2a generates from source domains"),
        "n below 1": (_recipe(tmp_path, teacher, {"type": "augment", "n": 0}), "n: "),
        "unknown source": (_recipe(tmp_path, teacher, dict(l2a, from_sources=["movies"])),
                           "l2a.from_sources: no task or text source named 'movies' (known: reviews)"),
        "not generated": (_recipe(tmp_path, teacher, dict(l2a, into="reviews")),
                          "l2a.into: 'reviews' is not a generated source"),
        "not trained on": (no_stage, "augment.into: no stage trains on 'aug'"),
        "holdout too large": (_recipe(tmp_path, teacher, dict(l2a, holdout=0.95)),
                              "l2a.holdout: 23 of the target's 24 training examples would be held out"),
        "pool too small": (_recipe(tmp_path, teacher, {"type": "augment", "n": 3},
                                   sources={"aug": {"type": "generated", "capacity": 50}}),
                           "sources.aug: holds 0 examples and capacity 50, but 72 are to be generated into it"),
        "no teacher": (_without_teacher(_recipe(tmp_path, teacher, {"type": "augment"})), "augment needs a teacher"),
    }


def _without_teacher(data: dict) -> dict:
    data["student"] = {"init": "checkpoint", "source": data.pop("teacher")}
    data["stages"][0]["losses"] = [{"type": "prediction", "alpha": 0.0}]
    return data


@pytest.mark.parametrize("case", ["l2a without a source", "n below 1", "unknown source", "not generated",
                                  "not trained on", "holdout too large", "pool too small", "no teacher"])
def test_bad_augmentation_input_is_one_line_and_exit_2(tmp_path, capsys, tiny_teacher_dir, case):
    data, expected = _bad(tmp_path, tiny_teacher_dir)[case]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["distill", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())


def test_an_interrupted_l2a_run_resumes_to_the_uninterrupted_result(tmp_path, tiny_teacher_dir):
    from safetensors.torch import load_file

    from test_resume import CrashAt

    plugin = {"type": "l2a", "n": 2, "from_sources": ["reviews"], "head_steps": 10, "steps": 2, "episode": 2,
              "log_every": 1}
    data = _recipe(tmp_path, tiny_teacher_dir, plugin, checkpoint_every=3, name="whole")
    whole = api.distill(recipe_from_dict(data))
    data["name"] = "crashed"
    with pytest.raises(KeyboardInterrupt):
        api.distill(recipe_from_dict(data), plugins=[CrashAt("kd", 7)])
    resumed = api.distill(recipe_from_dict(data), resume=True)
    for part in ("student/model.safetensors", "selector/policy.safetensors"):
        a, b = (load_file(run.path / part) for run in (whole, resumed))
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert whole.report["l2a"] == resumed.report["l2a"] | {"generation": whole.report["l2a"]["generation"]}
    assert _jsonl(whole.path / "augmented.jsonl") == _jsonl(resumed.path / "augmented.jsonl")


@pytest.mark.parametrize("recipe", ["augment.yaml", "l2a.yaml"])
def test_the_shipped_recipes_run_through_the_cli_on_tiny_models(tmp_path, tiny_teacher_dir, recipe):
    from pathlib import Path

    source = {"type": "task", "task": _toy(tmp_path, "source", 40, 2), "labels": False}
    sets = {"task": json.dumps(_toy(tmp_path, "target", 24, 1)), "teacher": str(tiny_teacher_dir),
            "output_dir": str(tmp_path / "out"), "name": "run", "max_length": "16", "batch_size": "8",
            "train_limit": "null", "student": json.dumps({"init": "extract", "layers": 2}), "speed": "false",
            "cache_dir": str(tmp_path / "cache"), "stages.0.epochs": "1"}
    if recipe == "l2a.yaml":
        sets.update({"sources": json.dumps({"aug": {"type": "generated"}, "reviews": source}),
                     "stages.0.plugins.0.from_sources": "[reviews]", "stages.0.plugins.0.head_steps": "5",
                     "stages.0.plugins.0.episode": "2"})
    args = ["distill", str(Path(__file__).resolve().parents[1] / "recipes" / recipe)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    run = tmp_path / "out" / "run"
    assert len(_jsonl(run / "augmented.jsonl")) == (24 * 4 if recipe == "augment.yaml" else 19 + 40)
    report = json.loads((run / "report.json").read_text())
    assert ("l2a" if recipe == "l2a.yaml" else "augment") in report


def test_a_generation_is_kept_and_read_back_by_a_run_that_would_remake_it(tmp_path, tiny_teacher_dir, caplog):
    plugin = {"type": "augment", "generator": "mlm", "n": 1, "from_sources": ["reviews"], "head_steps": 5,
              "steps": 2, "seed": 7}
    first = api.distill(recipe_from_dict(_recipe(tmp_path, tiny_teacher_dir, plugin, name="first")))
    kept = list((tmp_path / "cache" / "generated").glob("*.safetensors"))
    assert len(kept) == 1 and first.report["augment"]["generation"]["reused"] is False
    # another run seed, the same plugin seed: the same candidates, read back, not made again
    again = api.distill(recipe_from_dict(_recipe(tmp_path, tiny_teacher_dir, plugin, name="again", seed=3)))
    generation = again.report["augment"]["generation"]
    assert generation["reused"] is True and generation["head"] == first.report["augment"]["generation"]["head"]
    assert _jsonl(first.path / "augmented.jsonl") == _jsonl(again.path / "augmented.jsonl")
    # a changed generator option or plugin seed makes them again, under another key
    for name, change in (("steps", {"steps": 1}), ("seed", {"seed": 8})):
        run = api.distill(recipe_from_dict(_recipe(tmp_path, tiny_teacher_dir, {**plugin, **change}, name=name)))
        assert run.report["augment"]["generation"]["reused"] is False, name
    assert len(list((tmp_path / "cache" / "generated").glob("*.safetensors"))) == 3
    # a damaged file fails its check and is made again
    raw = bytearray(kept[0].read_bytes())
    raw[-5] ^= 0xFF
    kept[0].write_bytes(bytes(raw))
    mended = api.distill(recipe_from_dict(_recipe(tmp_path, tiny_teacher_dir, plugin, name="mended")))
    assert mended.report["augment"]["generation"]["reused"] is False and "unusable" in caplog.text
    assert _jsonl(first.path / "augmented.jsonl") == _jsonl(mended.path / "augmented.jsonl")
    # cache: false neither reads nor writes
    off = api.distill(recipe_from_dict(_recipe(tmp_path, tiny_teacher_dir, {**plugin, "cache": False}, name="off",
                                               cache_dir=str(tmp_path / "other"))))
    assert off.report["augment"]["generation"]["reused"] is False and not (tmp_path / "other" / "generated").exists()


def test_a_run_that_would_make_a_generation_another_is_making_waits_for_it(tmp_path):
    """Students of several seeds side by side make their shared generation once: the second waits on the first's
    lock (then finds the file and reads it back, as above)."""
    order = []

    def second():
        with making(tmp_path, "key"):
            order.append("second")

    with making(tmp_path, "key"):
        waiting = threading.Thread(target=second)
        waiting.start()
        waiting.join(timeout=0.3)  # room for the second to get in, which the lock must refuse
        order.append("first")
    waiting.join()
    assert order == ["first", "second"]
