"""Multi-domain distillation (issue 18): Amazon's test split and few-shot shares, the engine's hooks for methods
that answer per domain (the meta step's lookahead and phases, evaluation per domain), per-domain heads, HRKD's
domain-relational graph and Meta-KD, each on tiny random models; bad input through the command line."""
from __future__ import annotations

import contextlib
import json
import random

import pytest
import torch
import yaml

from alembert import api
from alembert.cli import main
from alembert.engine.step import MetaStep
from alembert.errors import AlembertError
from alembert.recipe import recipe_from_dict
from alembert.recipe.specs import MetaStepSpec
from alembert.tasks import get_task
from alembert.tasks.amazon import carve_test, split_key
from alembert.tasks.base import Example
from conftest import write_sentiment_csv

# ---- data: Amazon's test split, few-shot shares --------------------------------------------------------------


def _amazon_folder(tmp_path, rows: list[tuple[str, int]], domain: str = "toys"):
    folder = tmp_path / "amazon" / domain
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["sentence\tlabel"] + [f'"{text}"\t{label}' for text, label in rows]
    (folder / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\n", encoding="utf-8")
    return folder


def test_the_amazon_test_split_is_carved_from_train_by_content_alone(tmp_path):
    rows = [(f"review number {i}\n\twith a body", i % 2) for i in range(170)] + [("copied review", 1)] * 3
    _amazon_folder(tmp_path, rows)
    task = get_task("amazon-toys", tmp_path)
    train, test = task.load("train"), task.load("test")
    assert len(train) + len(test) == 173 and not {e.text_a for e in train} & {e.text_a for e in test}
    assert sorted(sum(e.label == y for e in test) for y in (0, 1)) in ([10, 10], [10, 12], [10, 13])  # 2/17 a label
    assert all(e.domain == "toys" for e in test) and "train.tsv (test part)" in task.source("test")
    # the file's order does not matter: the same reviews are test after shuffling the rows
    shuffled = list(rows)
    random.Random(3).shuffle(shuffled)
    _amazon_folder(tmp_path / "again", shuffled)
    again = get_task("amazon-toys", tmp_path / "again").load("test")
    assert sorted(e.text_a for e in again) == sorted(e.text_a for e in test)
    # the smallest keys of each label, copies of one text together
    train_keys = {split_key(e.text_a) for e in train if e.label == 0}
    assert max(split_key(e.text_a) for e in test if e.label == 0) < min(train_keys)
    # a folder with its own test.tsv keeps all of train.tsv for training
    (tmp_path / "amazon" / "toys" / "test.tsv").write_text("sentence\tlabel\nfine\t1\n", encoding="utf-8")
    assert len(task.load("train")) == 173 and len(task.load("test")) == 1


def test_carve_test_keeps_file_order_and_small_files_whole():
    examples = [Example(f"t{i}", None, i % 2) for i in range(4)]
    assert carve_test(examples) == (examples, [])  # round(2 * 2/17) = 0 a label


def test_the_shared_amazon_domains_split_1500_300_200():
    from alembert.tasks.base import resolve_data_dir

    try:
        if not (resolve_data_dir(None) / "amazon" / "books" / "train.tsv").is_file():
            pytest.skip("no Amazon data")
    except AlembertError:
        pytest.skip("no data directory")
    for domain in ("books", "dvd", "electronics", "kitchen"):
        task = get_task(f"amazon-{domain}")
        train, dev, test = task.load("train"), task.load("dev"), task.load("test")
        assert (len(train), len(dev), len(test)) == (1500, 300, 200)
        assert sum(e.label for e in test) == 100 and not {e.text_a for e in train} & {e.text_a for e in test}


def _domain_task(tmp_path, name: str, seed: int, rows: int = 40, labels=("0", "1")) -> dict:
    write_sentiment_csv(tmp_path / f"{name}-train.csv", rows, seed)
    write_sentiment_csv(tmp_path / f"{name}-dev.csv", 16, seed + 100)
    return {"name": name, "train": str(tmp_path / f"{name}-train.csv"), "dev": str(tmp_path / f"{name}-dev.csv"),
            "text_columns": ["text"], "labels": list(labels)}


def test_few_shot_shares_and_counts_apply_to_each_domain_alike(tmp_path):
    books, dvd = _domain_task(tmp_path, "books", 1, rows=40), _domain_task(tmp_path, "dvd", 2, rows=20)
    both = get_task([books, dvd])
    shares = both.load("train", seed=7, fraction=0.25)
    assert [sum(e.domain == d for e in shares) for d in ("books", "dvd")] == [10, 5]
    counts = both.load("train", 6, seed=7)
    assert [sum(e.domain == d for e in counts) for d in ("books", "dvd")] == [6, 6]
    # a domain's subset is the one it gives alone: per-domain and multi-domain runs train on the same examples
    alone = get_task(books).load("train", seed=7, fraction=0.25)
    assert [e.text_a for e in alone] == [e.text_a for e in shares if e.domain == "books"]
    with pytest.raises(AlembertError, match="fraction must be in"):
        both.load("train", fraction=1.5)


# ---- the meta step: phases, lookahead, the student's update ---------------------------------------------------


class _Rows:
    """A stand-in batch: rows of (x, y) with a domain each; `phase` as the meta step tags it."""

    def __init__(self, x, y, domain):
        self.x, self.y, self.domain, self.phase = x, y, domain, "train"

    def select(self, rows):
        rows = torch.as_tensor(rows)
        return _Rows(self.x[rows], self.y[rows], self.domain[rows])


def _toy_problem():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8)
    return _Rows(x, y, torch.tensor([0, 0, 1, 1, 0, 0, 1, 1]))


def _weighted(rows, w, phi, phases_seen=None):
    """Squared error per example; on the support and on whole batches each domain's mean is weighed by
    softmax(phi) * D (a domain graph's ratios), on the query all domains count alike."""
    if phases_seen is not None:
        phases_seen.append(rows.phase)
    errors = (rows.x @ w - rows.y) ** 2
    if rows.phase == "query":
        return errors.mean()
    ratios = torch.softmax(phi, dim=0) * 2
    return (errors * ratios[rows.domain]).mean()


def test_the_lookahead_gives_the_slow_parameters_the_query_loss_gradient_through_the_inner_step():
    batch = _toy_problem()
    w = torch.nn.Parameter(torch.tensor([0.5, -0.3, 0.2]))
    phi = torch.nn.Parameter(torch.tensor([0.3, -0.2]))
    lr_inner = 0.1
    # exact: w' = w - lr * grad_w L_support(w, phi); d L_query(w') / d phi by autograd through the inner step
    support, query = batch.select([0, 1, 2, 3]), batch.select([4, 5, 6, 7])
    support.phase, query.phase = "support", "query"
    inner = torch.autograd.grad(_weighted(support, w, phi), w, create_graph=True)[0]
    adapted = w - lr_inner * inner
    exact_phi = torch.autograd.grad(_weighted(query, adapted, phi), phi)[0]
    start_w, start_phi = w.detach().clone(), phi.detach().clone()
    optimizer = torch.optim.SGD([w, phi], lr=1.0)
    accelerator = type("A", (), {"sync_gradients": True})()
    spec = MetaStepSpec(type="meta", inner_lr=lr_inner, support=0.5, outer="lookahead", student="batch",
                        lookahead_radius=1e-3)
    seen = []
    step = MetaStep(spec, accelerator, optimizer, [w, phi], [w], None, lambda *a: None)
    step(batch, lambda rows: (_weighted(rows, w, phi, seen), {}), contextlib.nullcontext)
    assert torch.allclose(start_phi - phi.detach(), exact_phi, rtol=1e-3, atol=1e-6), (start_phi - phi, exact_phi)
    assert exact_phi.abs().max() > 1e-3  # a real signal
    # the student took a standard step on the whole batch's weighted loss, at the weights before adaptation
    w0 = start_w.clone().requires_grad_(True)
    whole = torch.autograd.grad(_weighted(batch, w0, start_phi), w0)[0]
    assert torch.allclose(start_w - w.detach(), whole, atol=1e-6)
    assert seen == ["support", "query", "support", "support", "train"]


def test_without_lookahead_the_slow_parameters_learn_from_the_query_loss_alone():
    batch = _toy_problem()
    w = torch.nn.Parameter(torch.tensor([0.5, -0.3, 0.2]))
    phi = torch.nn.Parameter(torch.tensor([0.3, -0.2]))
    optimizer = torch.optim.SGD([w, phi], lr=1.0)
    accelerator = type("A", (), {"sync_gradients": True})()
    step = MetaStep(MetaStepSpec(type="meta"), accelerator, optimizer, [w, phi], [w], None, lambda *a: None)
    step(batch, lambda rows: (_weighted(rows, w, phi), {}), contextlib.nullcontext)
    assert torch.equal(phi.detach(), torch.tensor([0.3, -0.2]))  # the unweighted query loss does not reach phi


def test_a_lookahead_over_several_inner_steps_is_refused():
    with pytest.raises(ValueError, match="outer lookahead differentiates through one inner step"):
        MetaStepSpec(type="meta", outer="lookahead", inner_steps=2)



# ---- per-domain heads and HRKD on tiny models -------------------------------------------------------------------


def _recipe(tmp_path, teacher, task, **changes) -> dict:
    data = {"name": "run", "task": task, "teacher": str(teacher), "output_dir": str(tmp_path / "out"),
            "student": {"init": "extract", "layers": 2}, "max_length": 16, "batch_size": 8, "speed": False,
            "cache_dir": str(tmp_path / "cache"), "checkpoint_every": 0,
            "stages": [{"name": "kd", "epochs": 1, "lr": 1e-3, "sampler": {"type": "per_domain", "k": 4},
                        "losses": [{"type": "hidden_mse"}, {"type": "attention_mse"},
                                   {"type": "prediction", "alpha": 1.0}]}]}
    data.update(changes)
    return data


def _hrkd(tmp_path, teacher, graph="trained", **changes):
    task = [_domain_task(tmp_path, "books", 1), _domain_task(tmp_path, "dvd", 2)]
    data = _recipe(tmp_path, teacher, task, plugins=[{"type": "domain_heads"}, {"type": "hrkd", "graph": graph,
                                                                                "log_every": 1}])
    data["stages"][0]["step"] = {"type": "meta", "outer": "lookahead", "student": "batch", "inner_lr": 1e-3}
    data.update(changes)
    return data


def _initial_graph(recipe, levels: int, domains: int, width: int) -> dict:
    """The graph a run of `recipe` starts from: its hrkd plugin, seeded as the run seeds it, builds it again."""
    from alembert.pipelines.run import make_plugins

    plugin = next(p for p in make_plugins(recipe) if p.name == "hrkd")
    return plugin.build_graph(width, levels, domains).state_dict()


def test_hrkd_trains_its_graph_and_a_head_per_domain(tmp_path, tiny_teacher_dir):
    from safetensors.torch import load_file

    recipe = recipe_from_dict(_hrkd(tmp_path, tiny_teacher_dir))
    run = api.distill(recipe)
    folder, report = run.path, run.report
    initial = _initial_graph(recipe, levels=3, domains=2, width=32)
    trained = load_file(folder / "hrkd" / "graph.safetensors")
    assert set(trained) == set(initial) and len(initial) > 10
    unchanged = [k for k in initial if torch.equal(initial[k], trained[k])]
    assert not unchanged  # every parameter of the graph moved: W1, W2, each GAT layer's W and a
    student = next(m for m in report["models"] if m["name"] == "student")
    assert {"accuracy", "books/accuracy", "dvd/accuracy"} <= set(student["metrics"])
    ratios = report["hrkd"]["history"]
    assert len(ratios) == report["training"]["optimizer_steps"] and report["hrkd"]["graph"] == "trained"
    assert all(abs(sum(level) - 1) < 1e-5 for h in ratios for level in h["ratios"])  # per level, over domains
    assert (folder / "hrkd" / "ratios.png").is_file()
    # each domain's model loads as a standard checkpoint and scores what the run scored for that domain
    from alembert.data.encoded import EncodedExamples
    from alembert.evaluation.scoring import score
    from alembert.models.loading import load_classifier

    for name, seed in (("books", 1), ("dvd", 2)):
        model, tokenizer = load_classifier(folder / "domains" / name)
        task = get_task(_domain_task(tmp_path, name, seed))
        metrics = score(model, EncodedExamples(task.load("dev"), tokenizer, 16), task)
        assert metrics["accuracy"] == pytest.approx(student["metrics"][f"{name}/accuracy"])
    assert not any(k.startswith("alembert_domain_heads") for k in load_file(folder / "student" / "model.safetensors"))
    books = load_file(folder / "domains" / "books" / "model.safetensors")
    dvd = load_file(folder / "domains" / "dvd" / "model.safetensors")
    assert torch.equal(books["bert.pooler.dense.weight"], dvd["bert.pooler.dense.weight"])  # one shared encoder
    assert not torch.equal(books["classifier.weight"], dvd["classifier.weight"])  # a head each


def test_a_frozen_graph_keeps_its_initialisation_as_released(tmp_path, tiny_teacher_dir):
    from safetensors.torch import load_file

    recipe = recipe_from_dict(_hrkd(tmp_path, tiny_teacher_dir, graph="frozen"))
    run = api.distill(recipe)
    saved = load_file(run.path / "hrkd" / "graph.safetensors")
    initial = _initial_graph(recipe, levels=3, domains=2, width=32)
    assert all(torch.equal(initial[k], saved[k]) for k in initial)
    ratios = run.report["hrkd"]["history"]
    assert len({json.dumps(h["ratios"]) for h in ratios}) > 1  # the ratios move with the prototypes all the same


# ---- Meta-KD ------------------------------------------------------------------------------------------------------


def test_prototype_and_expertise_weights_follow_easynlp_formulas():
    from alembert.plugins.meta_kd import expertise, prototype_weights

    h = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8], [1.0, 1.0], [0.0, -1.0]])
    domains = torch.tensor([0, 0, 1, 1, 2, 2])
    w = prototype_weights(h, domains, 3)
    c = torch.stack([h[domains == d].mean(0) for d in range(3)])
    cos = torch.nn.functional.cosine_similarity
    for i in range(6):
        d = int(domains[i])
        others = torch.stack([c[e] for e in range(3) if e != d]).mean(0)
        expected = (cos(h[i], c[d], dim=0) + cos(h[i], others, dim=0)) / 2
        assert w[i] == pytest.approx(float(expected), abs=1e-6)
    g = expertise(torch.tensor([[10.0, -10.0], [-10.0, 10.0], [0.0, 0.0]]), torch.tensor([0, 0, 1]))
    assert g.tolist() == pytest.approx([0.5, 1 / (1 + torch.e), 1 / (1 + float(torch.exp(torch.tensor(0.25))))],
                                       abs=1e-4)


def _meta_teacher(tmp_path, teacher_dir, **changes) -> dict:
    task = [_domain_task(tmp_path, "books", 1), _domain_task(tmp_path, "dvd", 2)]
    data = {"name": "meta-teacher", "task": task, "output_dir": str(tmp_path / "out"), "max_length": 16,
            "batch_size": 8, "speed": False, "checkpoint_every": 0,
            "student": {"init": "checkpoint", "source": str(teacher_dir)},
            "plugins": [{"type": "meta_teacher", "domain_weight": 0.5}],
            "stages": [{"name": "finetune", "epochs": 1, "lr": 1e-3, "losses": [{"type": "prediction", "alpha": 0}]}]}
    data.update(changes)
    return data


def _meta_student(tmp_path, teacher, domain="books", **changes) -> dict:
    data = {"name": f"meta-{domain}", "task": _domain_task(tmp_path, domain, 1 if domain == "books" else 2),
            "teacher": str(teacher), "output_dir": str(tmp_path / "out"), "max_length": 16, "batch_size": 8,
            "speed": False, "checkpoint_every": 0, "cache_dir": str(tmp_path / "cache"),
            "student": {"init": "extract", "layers": 2},
            "stages": [{"name": "meta", "epochs": 1, "lr": 1e-3, "plugins": [{"type": "meta_distill"}],
                        "losses": [{"type": "attention_mse"}, {"type": "hidden_mse"}]},
                       {"name": "pred", "epochs": 1, "lr": 1e-3,
                        "losses": [{"type": "prediction", "alpha": 1, "temperature": 2, "kd": "soft_ce",
                                    "tau_squared": False}]}]}
    data.update(changes)
    return data


def test_meta_kd_trains_a_meta_teacher_then_a_student_per_domain_from_it(tmp_path, tiny_teacher_dir):
    teacher = api.distill(recipe_from_dict(_meta_teacher(tmp_path, tiny_teacher_dir)))
    folder = teacher.path / "student"
    table = json.loads((folder / "meta_teacher.json").read_text())
    assert table["domains"] == ["books", "dvd"] and len(table["prototype_weights"]) == 80
    assert all(-1 <= w <= 1 for w in table["prototype_weights"].values())
    assert "domain_loss" in (teacher.path / "metrics.csv").read_text()
    assert set(teacher.report["meta_teacher"]["prototype_weights"]) == {"books", "dvd"}
    student = api.distill(recipe_from_dict(_meta_student(tmp_path, folder)))
    assert set(student.report["task"]) >= {"name"} and student.report["task"]["name"] == "books"
    assert 0 < student.report["meta_distill"]["prototype_weight_mean"] <= 1
    assert "domain_mse" in (student.path / "metrics.csv").read_text()
    # a student on other examples than the teacher's cannot read their weights: one line
    (tmp_path / "x").mkdir()
    with pytest.raises(AlembertError, match="training examples .* are not among .*meta_teacher.json"):
        api.distill(recipe_from_dict(_meta_student(tmp_path, folder, name="other",
                                                   task=_domain_task(tmp_path / "x", "books", 9))))


# ---- bad input through the command line: one line, exit 2, nothing written ----------------------------------------


def _bad(tmp_path, teacher):
    """name -> (recipe, the line expected on stderr)."""
    books = _domain_task(tmp_path, "books", 1)
    odd = _domain_task(tmp_path, "odd", 3, labels=("neg", "pos"))
    empty = _domain_task(tmp_path, "empty", 4)
    (tmp_path / "empty-train.csv").write_text("text,label\n", encoding="utf-8")  # a header, no review
    hrkd = _hrkd(tmp_path, teacher)
    shuffled = _hrkd(tmp_path, teacher)
    shuffled["stages"][0]["sampler"] = {"type": "shuffled"}
    one = _hrkd(tmp_path, teacher, task=books)
    one["stages"][0]["sampler"] = {"type": "shuffled"}
    return {
        "labels differ": (dict(hrkd, task=[books, odd]),
                          "task: domains books and odd have different labels (0, 1 against neg, pos)"),
        "fewer than k": (dict(hrkd, train_fraction=0.05), "sampler per_domain: k = 4 examples per domain, but domain "
                                                          "'books' has 2"),
        "empty domain": (dict(hrkd, task=[books, empty]), "empty-train.csv"),
        "limit and fraction": (dict(hrkd, train_limit=10, train_fraction=0.5),
                               "train_fraction: set either train_limit (a count) or train_fraction (a share), not "
                               "both"),
        "hrkd shuffled": (shuffled, "stages.0.sampler: hrkd compares the domains in every batch"),
        "one domain": (one, "plugins: domain_heads needs a task given as one task per domain"),
        "lookahead steps": (_hrkd(tmp_path, teacher, stages=[dict(hrkd["stages"][0], step={
            "type": "meta", "outer": "lookahead", "inner_steps": 2})]), "outer lookahead differentiates through one "
                                                                       "inner step"),
        "meta teacher of one domain": (_meta_teacher(tmp_path, teacher, task=books),
                                       "plugins: meta_teacher needs a task given as one task per domain"),
        "not a meta-teacher": (_meta_student(tmp_path, teacher), f"{teacher}: no meta_teacher.safetensors and "
                                                                 "meta_teacher.json (expected a meta-teacher"),
    }


@pytest.mark.parametrize("case", ["labels differ", "fewer than k", "empty domain", "limit and fraction",
                                  "hrkd shuffled", "one domain", "lookahead steps", "meta teacher of one domain",
                                  "not a meta-teacher"])
def test_bad_multi_domain_input_is_one_line_and_exit_2(tmp_path, capsys, tiny_teacher_dir, case):
    data, expected = _bad(tmp_path, tiny_teacher_dir)[case]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["distill", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())


def test_an_interrupted_hrkd_run_resumes_to_the_uninterrupted_result(tmp_path, tiny_teacher_dir):
    from safetensors.torch import load_file

    from test_resume import CrashAt

    data = _hrkd(tmp_path, tiny_teacher_dir, checkpoint_every=3, name="whole")
    data["stages"][0]["eval_every"] = 5
    whole = api.distill(recipe_from_dict(data))
    data["name"] = "crashed"
    with pytest.raises(KeyboardInterrupt):
        api.distill(recipe_from_dict(data), plugins=[CrashAt("kd", 7)])
    resumed = api.distill(recipe_from_dict(data), resume=True)
    for part in ("domains/books", "domains/dvd", "student"):
        a, b = (load_file(run.path / part / "model.safetensors") for run in (whole, resumed))
        assert all(torch.equal(a[k], b[k]) for k in a), part
    a, b = (load_file(run.path / "hrkd" / "graph.safetensors") for run in (whole, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.report["training"]["evaluations"] == resumed.report["training"]["evaluations"]
    assert whole.report["hrkd"]["history"] == resumed.report["hrkd"]["history"]
