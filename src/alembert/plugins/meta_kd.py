"""Meta-KD (Pan, Wang, Qiu, Zhang, Li, Huang; ACL-IJCNLP 2021), as released in EasyNLP
(examples/knowledge_distillation/metakd, easynlp/distillation/distill_metakd_application.py, core/distiller.py).

Two plugins (docs/multi_domain.md says what each formula is and where it comes from):

`meta_teacher`, in the run that fine-tunes the meta-teacher on every domain (a task given as one task per domain):
- prototype weights: h_i = the mean of example i's last hidden states over its real tokens after [CLS], by the
  model the teacher is fine-tuned from (or `embedder`); c_d = domain d's mean of them;
  w_i = (cos(h_i, c_d) + cos(h_i, mean of the other domains' c)) / 2 (generate_meta_weights.py);
- each example's loss is w_i * (CE(label) + domain_weight * CE(domain logits, shuffled domain ids)): the domain
  logits come from tanh(Linear(domain_embedding(d_i) + the mean of the model's own last hidden states after
  [CLS])), dropout, then a linear domain classifier; the target is the batch's domain ids in a random order, a
  domain-confusion ("corruption") term that keeps domain-specific knowledge out of the shared representation.
It writes the domain head and each training example's w_i next to the teacher (student/meta_teacher.*).

`meta_distill`, in the first stage of a student's run on one domain (the meta-distillation):
- each example's weight (1 + w_i) * g_i, g_i = 1 / (1 + exp((p_T(y_i) - 1)^2)) (the teacher's probability of the
  gold label: the "domain-expertise" weight, in [0.269, 0.5]), on every term of the stage;
- plus domain_weight * MSE between the student's domain representation fit(tanh(Linear_S(emb_S(d) + mean
  student state))) and the teacher's tanh(Linear_T(emb_T(d) + mean teacher state)), where `fit` is the stage's
  hidden_mse projection: one fit_dense shared by hidden states and domain representation, as released.
The student reads w_i from the teacher's table, so both runs must train on the same examples.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from alembert.engine.plugins import Plugin
from alembert.errors import AlembertError
from alembert.models.features import FeatureRequest
from alembert.models.layout import find_layout
from alembert.plugins.domain_heads import task_domains
from alembert.recipe import PluginOptions
from alembert.registry import PLUGINS

HEAD_FILE, TABLE_FILE = "meta_teacher.safetensors", "meta_teacher.json"


def example_key(example) -> str:
    """An example's identity across runs: its domain and text (a hash, so the table holds no text)."""
    text = "\0".join([example.domain or "", example.text_a, example.text_b or ""])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) -> (B, H): the mean over real tokens after the first ([CLS]), as EasyNLP's content vector (which
    averaged padding in too)."""
    keep = mask[:, 1:].to(hidden.dtype)
    return (hidden[:, 1:] * keep[..., None]).sum(dim=1) / keep.sum(dim=1).clamp_min(1)[:, None]


def prototype_weights(embeddings: torch.Tensor, domains: torch.Tensor, count: int) -> torch.Tensor:
    """w_i = (cos(h_i, c_{d_i}) + cos(h_i, mean of the other domains' centroids)) / 2."""
    centroids = torch.stack([embeddings[domains == d].mean(dim=0) for d in range(count)])
    others = (centroids.sum(dim=0, keepdim=True) - centroids) / (count - 1)  # (D, H): the other domains' mean
    own = F.cosine_similarity(embeddings, centroids[domains], dim=-1)
    rest = F.cosine_similarity(embeddings, others[domains], dim=-1)
    return (own + rest) / 2


def expertise(teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """g_i = 1 / (1 + exp((p_T(y_i) - 1)^2)): highest (0.5) where the teacher is sure of the gold label."""
    p = teacher_logits.float().softmax(dim=-1).gather(1, labels[:, None]).squeeze(1)
    return 1 / (1 + torch.exp((p - 1) ** 2))


class DomainHead(nn.Module):
    """Meta-KD's domain representation tanh(Linear(domain_embedding(d) + content)) (and, for the teacher, the
    domain classifier on it)."""

    def __init__(self, domains: int, width: int, classify: bool):
        super().__init__()
        self.embedding = nn.Embedding(domains, width)
        self.corrupt = nn.Linear(width, width)
        self.classifier = nn.Linear(width, domains) if classify else None

    def forward(self, domains: torch.Tensor, content_vector: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.corrupt(self.embedding(domains) + content_vector))


def _seeded(plugin: Plugin, build):
    with torch.random.fork_rng(devices=[]):  # initialised from the plugin's own stream, not the global one
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=plugin.generator)))
        return build()


def _task_only(ctx, who: str) -> None:
    if ctx.stage.sources != ["task"]:
        raise AlembertError(f"stages.{ctx.stage_index}.data: {who} weighs the task's own examples; train on "
                            "data: task")


class HeadOwner(Plugin):
    """A plugin whose trainable state is its `head` (a checkpoint keeps it, `--resume` restores it)."""

    def state_dict(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for name, value in self.head.state_dict().items():
                value.copy_(state[name])


@PLUGINS.register("meta_teacher")
class MetaTeacher(HeadOwner):
    class Options(PluginOptions):
        domain_weight: float = Field(0.5, ge=0)  # lambda of the shuffled-domain loss
        prototype_weights: bool = True  # w_i on each example's loss
        embedder: str | None = None  # the model whose states give the prototypes; default: the teacher's start
        dropout: float = Field(0.1, ge=0, lt=1)

    def setup(self, ctx) -> None:
        self.domains = task_domains(ctx.task)
        if len(self.domains) < 2:
            raise AlembertError(f"plugins: meta_teacher needs a task given as one task per domain; {ctx.task.name} is "
                                "one domain")
        layout = find_layout(ctx.student)
        self.last = layout.num_layers
        self.head = _seeded(self, lambda: DomainHead(len(self.domains), layout.hidden_size, True)).to(ctx.device)
        self.data = ctx.sources["task"]
        embedder = ctx.student
        if self.options.embedder:
            from alembert.models.loading import load_classifier

            embedder = load_classifier(self.options.embedder, ctx.task.num_labels)[0]
        self.weights = self.compute_weights(embedder, self.data, ctx.recipe.eval_batch_size).to(ctx.device)

    def compute_weights(self, model, data, batch_size: int) -> torch.Tensor:
        from alembert.evaluation.scoring import in_order
        from alembert.models.layout import takes_token_types

        was_training, device = model.training, next(model.parameters()).device
        model.eval()
        rows = []
        with torch.no_grad():
            for batch in in_order(data, batch_size):
                inputs = {k: v.to(device) for k, v in batch.inputs().items()
                          if k != "token_type_ids" or takes_token_types(model)}
                hidden = model(**inputs, output_hidden_states=True).hidden_states[-1].float()
                rows.append(content(hidden, inputs["attention_mask"]).cpu())
        model.train(was_training)
        return prototype_weights(torch.cat(rows), torch.tensor(data.domain_ids), len(self.domains))

    def parameters(self) -> list:
        return list(self.head.parameters())

    def student_request(self, ctx) -> FeatureRequest:
        return FeatureRequest(hidden=frozenset({self.last}))

    def on_stage_start(self, ctx) -> None:
        _task_only(ctx, "meta_teacher")

    def _w(self, out) -> torch.Tensor:
        return self.weights[out.batch.example_id.to(self.weights.device)]

    def example_weights(self, out, ctx):
        return self._w(out) if self.options.prototype_weights else None

    def extra_losses(self, out, ctx) -> dict:
        if not self.options.domain_weight:
            return {}
        domains = out.batch.domain
        rep = self.head(domains, content(out.student.hidden[self.last].float(), out.student.attention_mask))
        logits = self.head.classifier(F.dropout(rep, self.options.dropout, self.head.training))
        order = torch.randperm(len(domains), generator=self.generator).to(domains.device)
        loss = F.cross_entropy(logits, domains[order], reduction="none")
        if self.options.prototype_weights:
            loss = loss * self._w(out)
        return {"domain_loss": self.options.domain_weight * loss.mean()}

    def save(self, run_directory) -> None:
        from safetensors.torch import save_file

        folder = Path(run_directory) / "student"
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(folder / HEAD_FILE))
        table = {example_key(e): float(w) for e, w in zip(self.data.examples, self.weights.tolist())}
        (folder / TABLE_FILE).write_text(json.dumps(
            {"domains": list(self.domains), "hidden": self.head.corrupt.in_features,
             "domain_weight": self.options.domain_weight, "embedder": self.options.embedder or "the initial model",
             "prototype_weights": table}) + "\n")

    def report(self) -> dict:
        w = self.weights.cpu()
        return {"meta_teacher": {"domains": list(self.domains), "prototype_weights": {
            d: {"mean": float(w[torch.tensor(self.data.domain_ids) == i].mean()),
                "min": float(w[torch.tensor(self.data.domain_ids) == i].min()),
                "max": float(w[torch.tensor(self.data.domain_ids) == i].max())} for i, d in enumerate(self.domains)}}}


@PLUGINS.register("meta_distill")
class MetaDistill(HeadOwner):
    class Options(PluginOptions):
        domain_weight: float = Field(0.5, ge=0)  # lambda of the domain-representation MSE
        transferable: bool = True  # the (1 + w_i) * g_i example weights
        domain: str | None = None  # the teacher's domain of this run's examples (default: the task's name)

    def setup(self, ctx) -> None:
        if len(ctx.recipe.teacher_list) != 1:
            raise AlembertError("plugins: meta_distill distils one meta-teacher: set teacher")
        folder = Path(ctx.recipe.teacher_list[0].path)
        if not (folder / HEAD_FILE).is_file() or not (folder / TABLE_FILE).is_file():
            raise AlembertError(f"{folder}: no {HEAD_FILE} and {TABLE_FILE} (expected a meta-teacher: a model "
                                "fine-tuned with the meta_teacher plugin, e.g. recipes/meta_teacher.yaml)")
        saved = json.loads((folder / TABLE_FILE).read_text())
        teacher_domains = saved["domains"]
        own = task_domains(ctx.task) or (self.options.domain or ctx.task.name,)
        missing = [d for d in own if d not in teacher_domains]
        if missing:
            raise AlembertError(f"plugins: meta_distill: domain '{missing[0]}' is not one of the meta-teacher's "
                                f"({', '.join(teacher_domains)}); set the plugin's domain")
        self.to_teacher = torch.tensor([teacher_domains.index(d) for d in own], device=ctx.device)
        data = ctx.sources["task"]
        table = saved["prototype_weights"]
        # the teacher keyed each example by its domain's name in its task list (e.g. amazon-books)
        keys = [example_key(e if task_domains(ctx.task) else replace(e, domain=own[0])) for e in data.examples]
        absent = [i for i, k in enumerate(keys) if k not in table]
        if absent:
            raise AlembertError(f"{ctx.task.source('train')}: {len(absent)} of {len(keys)} training examples (the "
                                f"first: row {absent[0] + 1} of the split) are not among {folder / TABLE_FILE}'s; "
                                "train on the meta-teacher's examples (same task, train_limit or train_fraction, "
                                "data_seed)")
        self.weights = torch.tensor([table[k] for k in keys], device=ctx.device)
        from safetensors.torch import load_file

        teacher_state = load_file(str(folder / HEAD_FILE))
        self.teacher_head = DomainHead(len(teacher_domains), saved["hidden"], True).to(ctx.device)
        self.teacher_head.load_state_dict(teacher_state)
        self.teacher_head.requires_grad_(False).eval()
        student, teacher = find_layout(ctx.student), find_layout(ctx.teachers[0])
        self.levels = (student.num_layers, teacher.num_layers)
        self.head = _seeded(self, lambda: DomainHead(len(teacher_domains), student.hidden_size, False)).to(ctx.device)

    def parameters(self) -> list:
        return list(self.head.parameters())

    def student_request(self, ctx) -> FeatureRequest:
        return FeatureRequest(hidden=frozenset({self.levels[0]}))

    def on_stage_start(self, ctx) -> None:
        _task_only(ctx, "meta_distill")
        hidden = [t for t in ctx.objective.terms if t.name == "hidden_mse"]
        if not hidden or self.levels[1] not in ctx.objective.teacher_request.hidden:
            raise AlembertError(f"stages.{ctx.stage_index}: meta_distill projects the domain representation by the "
                                "hidden_mse loss's projection (one fit_dense) and reads the teacher's last layer: add "
                                "a hidden_mse loss whose map reaches it (map: uniform)")
        self.fit = hidden[0].loss.projection

    def _weights(self, out) -> torch.Tensor:
        w = self.weights[out.batch.example_id.to(self.weights.device)]
        return (1 + w) * expertise(out.teachers[0].logits, out.batch.labels)

    def example_weights(self, out, ctx):
        return self._weights(out) if self.options.transferable else None

    def extra_losses(self, out, ctx) -> dict:
        if not self.options.domain_weight:
            return {}
        domains = self.to_teacher[out.batch.domain]
        teacher = out.teachers[0]
        with torch.no_grad():
            target = self.teacher_head(domains, content(teacher.hidden[self.levels[1]].float(),
                                                        teacher.attention_mask))
        rep = self.fit(self.head(domains, content(out.student.hidden[self.levels[0]].float(),
                                                  out.student.attention_mask)))
        loss = (rep - target).pow(2).mean(dim=-1)
        if self.options.transferable:
            loss = loss * self._weights(out)
        return {"domain_mse": self.options.domain_weight * loss.mean()}

    def report(self) -> dict:
        return {"meta_distill": {"prototype_weight_mean": float(self.weights.mean())}}
