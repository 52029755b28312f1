"""Engine v2 on tiny random models: data sources and samplers, plugins and registries, the meta step, gradual
unfreezing, early stopping, the superset teacher cache, and the search and transfer pipelines."""
import json
import random
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from alembert import api
from alembert.cli import main
from alembert.data.encoded import EncodedExamples, StageData
from alembert.data.samplers import Mixture, PerDomain, Shuffled
from alembert.data.text import TextCorpus
from alembert.engine.objective import Objective
from alembert.engine.plugins import Outputs, Plugin, PluginSet, Weights
from alembert.engine.step import MetaStep
from alembert.errors import AlembertError
from alembert.models.features import Features
from alembert.models.layout import find_layout
from alembert.recipe import recipe_from_dict, stage_from_dict
from alembert.recipe.data_specs import MixtureSamplerSpec, PerDomainSamplerSpec
from alembert.recipe.specs import MetaStepSpec
from alembert.tasks import Example
from alembert.tasks.supplementary import split_sentences
from conftest import WORDS, tiny_bert, write_sentiment_csv, write_tokenizer
from test_resume import CrashAt, _assert_same_run

DOCS = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _encoded(tmp_path, count: int, domain: str | None = None, domains=()) -> EncodedExamples:
    rng = random.Random(count)
    examples = [Example(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))), None, rng.randint(0, 1),
                        domain) for _ in range(count)]
    return EncodedExamples(examples, write_tokenizer(tmp_path / "tok"), 16, domains=domains)


def _stage_data(sources: dict) -> StageData:
    first = next(iter(sources.values()))
    return StageData(sources, first.tokenizers.pad_ids())


# ---- samplers and sources ---------------------------------------------------------------------------------------


def test_in_memory_data_is_shuffled_draw_for_draw_as_torch_and_transformers_shuffle_it(tmp_path):
    """So the first engine's figures (DataLoader(shuffle=True) and transformers' LengthGroupedSampler) reproduce."""
    from torch.utils.data import DataLoader
    from transformers.trainer_pt_utils import LengthGroupedSampler

    data = _stage_data({"task": _encoded(tmp_path, 50)})
    for grouped in (False, True):
        mine, their = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
        ours = DataLoader(data, batch_sampler=Shuffled(data, 8, mine, group_by_length=grouped), collate_fn=data.collate,
                          generator=mine)  # as engine/stage.py builds it
        sampler = LengthGroupedSampler(8, lengths=data.sources[0].lengths, generator=their) if grouped else None
        theirs = DataLoader(data, batch_size=8, sampler=sampler, shuffle=not grouped, collate_fn=data.collate,
                            generator=their)
        for _ in range(2):  # two epochs: the second starts where the first left the generator
            assert [b.example_id.tolist() for b in ours] == [b.example_id.tolist() for b in theirs]


def test_per_domain_batches_hold_k_of_every_domain_and_an_epoch_follows_the_fit_domain(tmp_path):
    domains = ("a", "b", "c")
    examples = _encoded(tmp_path, 10, "a", domains).examples + _encoded(tmp_path, 4, "b", domains).examples \
        + _encoded(tmp_path, 7, "c", domains).examples
    data = _stage_data({"task": EncodedExamples(examples, write_tokenizer(tmp_path / "t"), 16, domains=domains)})
    sampler = PerDomain(data, 0, torch.Generator().manual_seed(0), PerDomainSamplerSpec(type="per_domain", k=3),
                        domain_names=domains)
    batches = list(sampler)
    assert sampler.batch_size == 9 and len(batches) == len(sampler) == 4  # ceil(10 / 3): the largest domain fits
    ids = [data[i]["domain"] for i in range(len(data))]
    for batch in batches:
        assert sorted(ids[i] for i in batch) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert {i for b in batches for i in b if ids[i] == 0} == set(range(10))  # the fit domain once, all of it
    generator = torch.Generator().manual_seed(0)
    again = PerDomain(data, 0, generator, PerDomainSamplerSpec(type="per_domain", k=3), domain_names=domains)
    assert list(again) == batches  # an epoch is a function of the generator's state at its start
    with pytest.raises(AlembertError, match="k = 5 examples per domain, but domain 'b' has 4"):
        PerDomain(data, 0, generator, PerDomainSamplerSpec(type="per_domain", k=5), domain_names=domains)


def test_mixture_draws_each_batch_from_one_source_by_ratio(tmp_path):
    data = _stage_data({"big": _encoded(tmp_path, 60), "small": _encoded(tmp_path, 20)})
    spec = MixtureSamplerSpec(type="mixture", ratios={"big": 1.0, "small": 3.0})
    sampler = Mixture(data, 5, torch.Generator().manual_seed(1), spec)
    sources = []
    for _ in range(25):
        for batch in sampler:
            origin = {data.locate(i)[0] for i in batch}
            assert len(origin) == 1 and len(batch) == 5  # one source per batch, always full
            sources.append(origin.pop())
    assert len(sampler) == 16 and abs(sources.count(1) / len(sources) - 0.75) < 0.05
    by_size = Mixture(data, 5, torch.Generator().manual_seed(1), MixtureSamplerSpec(type="mixture", tau=1.0))
    assert by_size.probs.tolist() == pytest.approx([0.75, 0.25])  # size ** 1


def test_text_is_indexed_once_and_read_back_one_shard_at_a_time(tmp_path):
    lines = [f"sentence number {i} has a few words in it . and a second sentence of line {i} here ." for i in
             range(30)] + ["= = Heading = =", "too short"]
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    from alembert.data.encoded import Tokenizers

    corpus = TextCorpus([corpus_file], Tokenizers(write_tokenizer(tmp_path / "tok"), (), 16), shard_size=8)
    expected = [s for line in lines for s in split_sentences(line)]
    assert len(corpus) == len(expected) == 60 and [len(r) for r in corpus.shards] == [8] * 7 + [4]
    assert corpus.texts(range(len(corpus))) == expected
    data = _stage_data({"text": corpus})
    seen, loaded_max = [], 0
    for batch in Shuffled(data, 4, torch.Generator().manual_seed(0), group_by_length=True):
        seen += batch
        for i in batch:
            assert data[i]["label"] is None
        loaded_max = max(loaded_max, len(corpus._loaded))
    assert sorted(seen) == list(range(60)) and loaded_max <= 2  # never more than two shards tokenized
    sample = TextCorpus([corpus_file], corpus.tokenizers, limit=10, seed=3)
    assert len(sample) == 10 and set(sample.texts(range(10))) <= set(expected)


def _domain_task(tmp_path, name: str, seed: int, labels=("0", "1")) -> dict:
    write_sentiment_csv(tmp_path / f"{name}-train.csv", 40, seed)
    write_sentiment_csv(tmp_path / f"{name}-dev.csv", 16, seed + 100)
    return {"name": name, "train": str(tmp_path / f"{name}-train.csv"), "dev": str(tmp_path / f"{name}-dev.csv"),
            "text_columns": ["text"], "labels": list(labels)}


def _base(tmp_path, task, teacher, **changes) -> dict:
    data = {"name": "run", "task": task, "teacher": str(teacher), "output_dir": str(tmp_path / "out"),
            "student": {"init": "extract", "layers": 2}, "max_length": 16, "batch_size": 8, "speed": False,
            "cache_dir": str(tmp_path / "cache"),
            "stages": [{"name": "kd", "epochs": 2, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}]}]}
    data.update(changes)
    return data


def test_a_task_per_domain_samples_k_per_domain_and_scores_each_domain(tmp_path, tiny_teacher_dir):
    task = [_domain_task(tmp_path, "books", 1), _domain_task(tmp_path, "dvd", 2)]
    stages = [{"name": "kd", "epochs": 1, "lr": 1e-3, "sampler": {"type": "per_domain", "k": 4},
               "losses": [{"type": "prediction", "alpha": 0.5}]}]
    run = api.distill(recipe_from_dict(_base(tmp_path, task, tiny_teacher_dir, stages=stages)))
    assert run.report["task"]["domains"] == ["books", "dvd"]
    last = run.report["training"]["evaluations"][-1]
    assert {"accuracy", "books/accuracy", "dvd/accuracy"} <= set(last)
    assert run.report["training"]["examples_seen"] == 10 * 8  # 40 / 4 batches of 4 + 4


def test_domains_with_different_labels_or_an_empty_one_are_refused(tmp_path):
    from alembert.tasks import get_task

    with pytest.raises(AlembertError, match="domains books and dvd have different labels .0, 1 against a, b"):
        get_task([_domain_task(tmp_path, "books", 1), _domain_task(tmp_path, "dvd", 2, labels=("a", "b"))])


# ---- plugins, registries and the objective ----------------------------------------------------------------------


def test_a_plugin_written_from_scratch_runs_from_a_recipe(tmp_path, toy_task, tiny_teacher_dir):
    stages = [{"name": "kd", "epochs": 2, "lr": 1e-3, "plugins": [{"type": "teacher_confidence", "power": 2.0}],
               "losses": [{"type": "prediction", "alpha": 1.0}]}]
    data = _base(tmp_path, toy_task, tiny_teacher_dir, stages=stages,
                 imports=[str(DOCS / "teacher_confidence.py")])
    run = api.distill(recipe_from_dict(data))
    with open(run.path / "metrics.csv") as f:
        logged = [line for line in f if "teacher_confidence/mean_weight" in line]
    weight = float(logged[0].split(",")[-1])
    assert 0.25 <= weight <= 1.0  # p_max ** 2 for p_max in [0.5, 1]
    assert json.loads((run.path / "report.json").read_text())["recipe"]["imports"] == data["imports"]
    bad = dict(data, stages=[dict(stages[0], plugins=[{"type": "teacher_confidence", "power": -1}])])
    with pytest.raises(AlembertError, match=r"stages\.0\.plugins\.0: power: Input should be greater than or equal"):
        recipe_from_dict(bad)


def test_weights_of_several_plugins_multiply_and_pair_weights_weigh_layer_pairs():
    class Halve(Plugin):
        def example_weights(self, out, ctx):
            return torch.full((out.batch.size,), 0.5)

    class Ramp(Plugin):
        def example_weights(self, out, ctx):
            return torch.arange(out.batch.size, dtype=torch.float32)

        def pair_weights(self, out, ctx):
            return {0: torch.tensor([[1.0, 0.0]]).expand(out.batch.size, -1)}

    batch = type("B", (), {"size": 3, "labels": torch.zeros(3)})()  # the weights go to its labels' device
    weights = PluginSet.weights([Halve(), Ramp()], Outputs(batch, batch, None, []), None)
    assert weights.example.tolist() == [0.0, 0.5, 1.0] and weights.pairs[0].shape == (3, 2)
    layout = find_layout(tiny_bert(layers=2, hidden=8, heads=2))
    objective = Objective(stage_from_dict({"name": "s", "losses": [{"type": "hidden_mse", "map": "uniform",
                                                                     "embeddings": False}]}), layout, layout, False)
    student = Features(torch.zeros(2, 2), torch.ones(2, 3), hidden={1: torch.ones(2, 3, 8), 2: torch.zeros(2, 3, 8)})
    teacher = Features(torch.zeros(2, 2), torch.ones(2, 3), hidden={1: torch.zeros(2, 3, 8), 2: torch.zeros(2, 3, 8)})
    labels, rows = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.bool)
    whole, _ = objective(student, [teacher], labels, rows)
    only_second, _ = objective(student, [teacher], labels, rows, Weights(pairs={0: torch.tensor([[0.0, 1.0]] * 2)}))
    assert whole.item() == pytest.approx(1.0) and only_second.item() == 0.0  # the pair (1, 1) carries all the loss


def test_attention_losses_compare_models_of_other_head_counts_by_re_splitting():
    teacher, student = tiny_bert(layers=4, hidden=32, heads=4).eval(), tiny_bert(layers=2, hidden=32, heads=2).eval()
    ids = torch.randint(5, 20, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    layout = find_layout(teacher)

    def objective(heads, student_layout=layout):
        losses = [{"type": "attention_mse", "map": "last", **({"heads": heads} if heads else {})}]
        return Objective(stage_from_dict({"name": "a", "losses": losses}), student_layout, layout, False)

    own, resplit = objective(None), objective(4)
    from alembert.models.features import FeatureTap

    with FeatureTap(teacher, own.teacher_request | resplit.teacher_request) as tap:
        features = tap.run(inputs)
    # re-split into the teacher's own 4 heads: exactly its own attention scores
    assert torch.equal(own.terms[0].pieces(features, 4)[0], resplit.terms[0].pieces(features, 4)[0])
    # own heads of unequal counts: refused when the objective is built, before any training
    with pytest.raises(AlembertError, match="attention_mse compares each model's own heads, but the student has 2"):
        objective(None, find_layout(student))
    with pytest.raises(AlembertError, match="attention_mse needs equal head counts"):
        own.terms[0].loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 3, 3))
    with pytest.raises(AlembertError, match="heads 3 does not divide the student's attention width 32"):
        objective(3, find_layout(student))


def test_a_loss_a_users_module_registers_trains_from_a_recipe(tmp_path, toy_task, tiny_teacher_dir):
    module = tmp_path / "cosine_loss.py"
    module.write_text('''
import torch.nn.functional as F
from torch import nn
from typing import Literal
from alembert.engine.terms import layer_loss
from alembert.recipe.specs import HiddenLossSpec
from alembert.registry import LOSSES

class CosineSpec(HiddenLossSpec):
    type: Literal["hidden_cosine"]

class Cosine(nn.Module):
    def __init__(self, student_width, teacher_width):
        super().__init__()
        self.projection = nn.Linear(student_width, teacher_width)

    def per_example(self, student, teacher, mask=None):
        distance = 1 - F.cosine_similarity(self.projection(student), teacher.detach(), dim=-1)
        return (distance * mask).sum(1) / mask.sum(1)

LOSSES.register("hidden_cosine", layer_loss(CosineSpec, "hidden", Cosine))
''')
    stages = [{"name": "ild", "epochs": 1, "lr": 1e-3, "losses": [{"type": "hidden_cosine", "map": "last"}]}]
    run = api.distill(recipe_from_dict(_base(tmp_path, toy_task, tiny_teacher_dir, stages=stages,
                                             imports=[str(module)])))
    with open(run.path / "metrics.csv") as f:
        values = [float(line.split(",")[-1]) for line in f if ",hidden_cosine," in line]
    assert values and values[-1] < values[0]


def test_a_plugin_that_owns_parameters_trains_them_and_resumes_exactly(tmp_path, toy_task, tiny_teacher_dir):
    stages = [{"name": "ild", "epochs": 2, "lr": 1e-2, "plugins": [{"type": "uncertainty_weights"}],
               "losses": [{"type": "hidden_mse"}, {"type": "attention_mse", "map": "last"}]},
              {"name": "pred", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}]}]
    data = _base(tmp_path, toy_task, tiny_teacher_dir, stages=stages, checkpoint_every=1, name="whole",
                 imports=[str(DOCS / "uncertainty_weights.py")])
    whole = api.distill(recipe_from_dict(data))
    with open(whole.path / "metrics.csv") as f:
        weights = [float(line.split(",")[-1]) for line in f if "uncertainty/term0_pair0" in line]
    assert weights and weights[-1] != 1.0  # the log-variances moved from their start
    crashed = dict(data, name="crashed")
    with pytest.raises(KeyboardInterrupt):
        api.distill(recipe_from_dict(crashed), plugins=[CrashAt("ild", 7)])
    resumed = api.distill(recipe_from_dict(crashed), resume=True)
    _assert_same_run(whole.path, resumed.path)


# ---- step strategies, unfreezing, early stopping -----------------------------------------------------------------


class _Rows:
    """A stand-in batch: rows of (x, y) with a domain each, as split_support reads them."""

    def __init__(self, x, y, domain):
        self.x, self.y, self.domain = x, y, domain

    def select(self, rows):
        rows = torch.as_tensor(rows)
        return _Rows(self.x[rows], self.y[rows], self.domain[rows])


def test_the_meta_step_applies_the_query_gradient_taken_at_the_adapted_weights():
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    batch = _Rows(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [2.0, 0.0]]), torch.tensor([2.0, 0.0, 1.0, 1.0]),
                  torch.tensor([0, 0, 1, 1]))

    def loss_of(rows):
        return ((rows.x @ w - rows.y) ** 2).mean(), {}

    optimizer = torch.optim.SGD([w], lr=1.0)
    accelerator = type("A", (), {"sync_gradients": True})()
    step = MetaStep(MetaStepSpec(type="meta", inner_lr=0.1, support=0.5), accelerator, optimizer, [w], [w], None,
                    lambda *a: None)
    start = w.detach().clone()
    support, query = batch.select([0, 2]), batch.select([1, 3])  # each domain's first half, then the rest
    adapted = start.clone().requires_grad_(True)
    inner = torch.autograd.grad(((support.x @ adapted - support.y) ** 2).mean(), adapted)[0]
    adapted = (start - 0.1 * inner).requires_grad_(True)
    outer = torch.autograd.grad(((query.x @ adapted - query.y) ** 2).mean(), adapted)[0]
    step(batch, loss_of, lambda: __import__("contextlib").nullcontext())
    assert torch.allclose(w.detach(), start - outer)  # SGD lr 1 from the original weights, first order


def test_gradual_unfreezing_keeps_lower_layers_frozen_until_their_turn(tmp_path, toy_task, tiny_teacher_dir):
    stages = [{"name": "kd", "epochs": 1, "lr": 1e-2, "unfreeze": {"every": 5},
               "losses": [{"type": "prediction", "alpha": 0.5}]}]
    run = api.distill(recipe_from_dict(_base(tmp_path, toy_task, tiny_teacher_dir, stages=stages)))
    trained = load_file(run.student_dir / "model.safetensors")
    from alembert.models.initialisers import build_student
    from alembert.models.loading import load_classifier

    recipe = recipe_from_dict(_base(tmp_path, toy_task, tiny_teacher_dir))
    teacher, tokenizer = load_classifier(tiny_teacher_dir)
    start, _ = build_student(recipe, teacher, tokenizer, 2)
    initial = start.state_dict()
    # 12 steps, a group every 5: the head (steps 1-5), then layer 1 (from 6), then layer 0 (from 11): the
    # embeddings, last in the order, never train
    assert torch.equal(trained["bert.embeddings.word_embeddings.weight"],
                       initial["bert.embeddings.word_embeddings.weight"])
    assert not torch.equal(trained["bert.encoder.layer.0.attention.self.query.weight"],
                           initial["bert.encoder.layer.0.attention.self.query.weight"])
    assert not torch.equal(trained["classifier.weight"], initial["classifier.weight"])


def test_early_stopping_ends_a_stage_that_stops_improving(tmp_path, toy_task, tiny_teacher_dir):
    stages = [{"name": "kd", "epochs": 4, "lr": 1e-12, "eval_every": 1, "early_stop": {"patience": 2},
               "losses": [{"type": "prediction", "alpha": 0.5}]}]
    run = api.distill(recipe_from_dict(_base(tmp_path, toy_task, tiny_teacher_dir, stages=stages)))
    training = run.report["training"]
    assert training["early_stopped"] == ["kd"] and len(training["evaluations"]) == 3
    assert training["optimizer_steps"] == 3


def test_a_recipe_extracts_a_narrower_student_by_importance_or_at_random(tmp_path, toy_task, tiny_teacher_dir):
    stages = [{"name": "kd", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}]}]
    sizes = {"layers": 2, "hidden": 16, "heads": 2, "ffn": 24}
    runs = {select: api.distill(recipe_from_dict(_base(tmp_path, toy_task, tiny_teacher_dir, name=select, stages=stages,
                                                       student={"init": "extract", "select": select,
                                                                "importance_examples": 32, **sizes})))
            for select in ("importance", "random")}
    for run in runs.values():
        config = json.loads((run.student_dir / "config.json").read_text())
        assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
                config["intermediate_size"]) == (2, 16, 2, 24)
    weights = [load_file(run.student_dir / "model.safetensors")["bert.embeddings.word_embeddings.weight"]
               for run in runs.values()]
    assert not torch.equal(*weights)  # importance and chance kept other dimensions


# ---- the superset cache, search and transfer ----------------------------------------------------------------------


def _ild(map_kind: str) -> list[dict]:
    return [{"name": "ild", "epochs": 2, "lr": 1e-3, "losses": [{"type": "hidden_mse", "map": map_kind}]}]


def test_runs_differing_only_in_their_layer_map_share_one_superset_cache(tmp_path, toy_task, tiny_teacher_dir):
    reports = [api.distill(recipe_from_dict(_base(tmp_path, toy_task, tiny_teacher_dir, name=kind, stages=_ild(kind),
                                                  teacher_cache={"store": "all"}))).report["teacher_cache"]
               for kind in ("last", "uniform", "skip")]
    assert not reports[0]["reused"] and reports[1]["reused"] and reports[2]["reused"]
    assert len({r["path"] for r in reports}) == 1


def test_a_cls_only_cache_keeps_one_row_per_example_and_trains_as_the_live_teacher(tmp_path, toy_task,
                                                                                tiny_teacher_dir):
    stages = [{"name": "ild", "epochs": 2, "lr": 1e-3,
               "losses": [{"type": "hidden_mse", "map": "uniform", "cls_only": True}, {"type": "pkd"}]}]
    runs = [api.distill(recipe_from_dict(_base(tmp_path, toy_task, tiny_teacher_dir, name=name, stages=stages,
                                               teacher_cache=cache)))
            for name, cache in (("live", False), ("cls", {"cls_only": True}))]
    info = runs[1].report["teacher_cache"]
    assert info["enabled"] and runs[1].report["recipe"]["teacher_cache"]["cls_only"]
    hidden = next(Path(info["path"]).glob("hidden_*.npy"))
    assert __import__("numpy").load(hidden, mmap_mode="r").shape[0] == 96  # one [CLS] row per training example
    weights = [load_file(run.student_dir / "model.safetensors") for run in runs]
    assert max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]) < 3e-3
    with pytest.raises(AlembertError, match=r"teacher_cache.cls_only: .*stages\.0\.losses\.0 \(hidden_mse\) compares"):
        recipe_from_dict(_base(tmp_path, toy_task, tiny_teacher_dir, stages=_ild("last"),
                               teacher_cache={"cls_only": True}))


def test_search_runs_variants_in_memory_and_skips_finished_ones(tmp_path, toy_task, tiny_teacher_dir):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(_base(tmp_path, toy_task, tiny_teacher_dir, stages=_ild("last") + [
        {"name": "kd", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0.5}]}])))
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({"name": "maps", "recipe": "base.yaml", "output_dir": str(tmp_path / "out"),
                                      "variants": {"last": [], "uniform": ["stages.0.losses.0.map=uniform"]}}))
    messages = []
    result = api.search(search, log=messages.append)
    assert [r["variant"] for r in result["results"]] == ["last", "uniform"]
    assert result["results"][1]["cache_reused"]  # the teacher ran once for both
    assert not (tmp_path / "out" / "run").exists() and (tmp_path / "out" / "maps" / "search.md").is_file()
    again = []
    api.search(search, log=again.append)
    assert all("(done)" in m for m in again)


def test_transfer_distils_then_fine_tunes_a_fresh_head_on_each_task(tmp_path, toy_task, tiny_teacher_dir):
    recipe = tmp_path / "distil.yaml"
    recipe.write_text(yaml.safe_dump(_base(tmp_path, toy_task, tiny_teacher_dir, name="student")))
    three_way = _domain_task(tmp_path, "three", 5, labels=("0", "1", "2"))
    spec = tmp_path / "transfer.yaml"
    spec.write_text(yaml.safe_dump({"name": "xfer", "distill": "distil.yaml", "output_dir": str(tmp_path / "out"),
                                    "tasks": [{"task": toy_task}, {"task": three_way, "epochs": 1}],
                                    "finetune": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 16}}))
    result = api.transfer(spec)
    assert [(r["task"], r["seed"]) for r in result["rows"]] == [("toy", 42), ("three", 42)]
    encoder = json.loads((tmp_path / "out" / "xfer" / "encoder" / "config.json").read_text())
    assert encoder["architectures"] == ["BertModel"]  # the head dropped: each task gets its own
    assert "| toy | three | average |" in (tmp_path / "out" / "xfer" / "transfer.md").read_text()


# ---- bad input through the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("change, expected", [
    ({"stages": [{"name": "s", "plugins": [{"type": "mixupp"}], "losses": [{"type": "prediction"}]}]},
     "stages.0.plugins.0: unknown plugin 'mixupp' (did you mean 'mixup'?"),
    ({"stages": [{"name": "s", "plugins": [{"type": "mixup", "alpha": "high"}], "losses": [{"type": "prediction"}]}]},
     "stages.0.plugins.0.mixup.alpha: Input should be a valid number"),
    ({"stages": [{"name": "s", "data": "task+movies", "losses": [{"type": "prediction"}]}]},
     "stages.0.data: no source named 'movies'"),
    ({"stages": [{"name": "s", "sampler": {"type": "per_domain", "k": 50}, "losses": [{"type": "prediction"}]}],
      "domains": True}, "sampler per_domain: k = 50 examples per domain, but domain 'books' has 40"),
])
def test_bad_plugins_sources_and_samplers_are_one_line_and_exit_2(tmp_path, capsys, toy_task, tiny_teacher_dir,
                                                                 change, expected):
    change = dict(change)
    if change.pop("domains", False):
        toy_task = [_domain_task(tmp_path, "books", 1), _domain_task(tmp_path, "dvd", 2)]
    data = _base(tmp_path, toy_task, tiny_teacher_dir, **change)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    capsys.readouterr()  # what the fixtures printed
    assert main(["distill", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "out").exists()
