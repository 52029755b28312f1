"""HRKD (Dong, Li, Shen, Qiu, EMNLP 2021): a student for several domains distilled jointly, each domain's
layer losses weighted by ratios that a domain-relational graph computes from the domains' prototypes.

Each step the batch holds k examples of every domain (the `per_domain` sampler). For each level m (0: the
embedding output, m: student layer m) a domain's prototype is the mean of the student's hidden states over that
domain's examples and real tokens, taken through the hidden-state loss's projection to the teacher's width (as
released: the projected states), not detached. The graph (plugins/hrkd_graph.py: hierarchical compare-aggregate,
then a graph attention network per level) turns them into ratios r (levels, D), each level's summing to 1 over the
domains. Every layer term's value for an example of domain d at a pair whose student side is level m is weighed by
D * r[m, d] (pair weights): the objective's mean over the batch, which holds every domain equally, is then
sum_d r[m, d] * (domain d's loss), the released loss; equal ratios give plain multi-domain distillation. The
prediction loss is not weighed (as released: its per-domain sum times 1/D is the batch mean).

What trains the graph (the released code never does; see docs/multi_domain.md): with `graph: trained` its
parameters are the plugin's, and the recipe's `step: {type: meta, outer: lookahead, student: batch}` trains them on
the lookahead objective: the unweighted distillation loss of each domain's query examples after an SGD step on the
support examples' graph-weighted loss. In the meta step's 'query' phase this plugin gives no weights (the outer
objective counts every domain alike). With `graph: frozen` the graph keeps its random initialisation, as the
released code does (its ratios still change as the prototypes do, and the student's gradient flows through them).

    plugins: [{type: domain_heads}, {type: hrkd}]
    stages: [{..., sampler: {type: per_domain, k: 8}, step: {type: meta, outer: lookahead, student: batch}}]
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from alembert.engine.plugins import Plugin
from alembert.engine.terms import LayerTerm
from alembert.errors import AlembertError
from alembert.models.features import FeatureRequest
from alembert.models.layout import find_layout
from alembert.plugins.domain_heads import task_domains
from alembert.plugins.hrkd_graph import DomainGraph
from alembert.recipe import PluginOptions
from alembert.registry import PLUGINS


class HRKDOptions(PluginOptions):
    graph: Literal["trained", "frozen"] = "trained"  # frozen: never optimised, as the released code
    hierarchical: bool = True  # the compare-aggregate over lower levels (False: each level's own prototypes)
    reference: bool = True  # reference prototypes by self-attention across domains (False: a domain's own)
    space: Literal["projected", "student"] = "projected"  # prototypes after the hidden loss's projection, or not
    padding: bool = False  # average prototypes over padding too (the released code does)
    heads: int = Field(8, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    slope: float = Field(0.2, ge=0)  # LeakyReLU's negative slope in the attention scores
    log_every: int = Field(10, ge=1)  # optimizer steps between logged (and plotted) ratios


@PLUGINS.register("hrkd")
class HRKD(Plugin):
    Options = HRKDOptions

    def setup(self, ctx) -> None:
        self.domains = task_domains(ctx.task)
        if len(self.domains) < 2:
            raise AlembertError(f"plugins: hrkd needs a task given as one task per domain (a list of tasks); "
                                f"{ctx.task.name} is one domain")
        if not ctx.teachers:
            raise AlembertError("plugins: hrkd weighs distillation losses: set a teacher")
        student = find_layout(ctx.student)
        self.levels = student.num_layers + 1
        width = find_layout(ctx.teachers[0]).hidden_size if self.options.space == "projected" else \
            student.hidden_size
        self.graph = self.build_graph(width, self.levels, len(self.domains)).to(ctx.device)
        self.graph.requires_grad_(self.options.graph == "trained")
        self.history: list[dict] = []
        self.last: torch.Tensor | None = None

    def build_graph(self, width: int, levels: int, domains: int) -> DomainGraph:
        """The graph, initialised from the plugin's own random stream (the run's seed), not the global one."""
        o = self.options
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator)))
            return DomainGraph(width, levels, domains, o.heads, o.dropout, o.slope, o.hierarchical, o.reference)

    def parameters(self) -> list:
        return list(self.graph.parameters()) if self.options.graph == "trained" else []

    def student_request(self, ctx) -> FeatureRequest:
        return FeatureRequest(hidden=frozenset(range(self.levels)))

    def on_stage_start(self, ctx) -> None:
        if ctx.stage.sampler.type != "per_domain":
            raise AlembertError(f"stages.{ctx.stage_index}.sampler: hrkd compares the domains in every batch: use "
                                "{type: per_domain, k: ...}")
        self.terms = {i: term for i, term in enumerate(ctx.objective.terms) if isinstance(term, LayerTerm)}
        if not self.terms:
            raise AlembertError(f"stages.{ctx.stage_index}: hrkd weighs layer losses (hidden_mse, attention_mse, "
                                "...), and the stage has none")
        self.projection = None
        if self.options.space == "projected":
            hidden = [t for t in self.terms.values() if t.name == "hidden_mse"]
            if not hidden:
                raise AlembertError(f"stages.{ctx.stage_index}: hrkd's prototypes are the student's hidden states "
                                    "through the hidden_mse projection: add a hidden_mse loss, or set space: student")
            self.projection = hidden[0].loss.projection

    def prototypes(self, out) -> torch.Tensor:
        """(levels, D, F): each domain's mean (projected) hidden state over its examples' tokens."""
        features, domains = out.student, out.batch.domain
        mask = features.attention_mask.float()
        if self.options.padding:
            mask = torch.ones_like(mask)
        levels = []
        for m in range(self.levels):
            hidden = features.hidden[m].float()
            if self.projection is not None:
                hidden = self.projection(hidden)
            sums = (hidden * mask[..., None]).sum(dim=1)  # (B, F)
            total = hidden.new_zeros(len(self.domains), hidden.shape[-1]).index_add(0, domains, sums)
            count = mask.new_zeros(len(self.domains)).index_add(0, domains, mask.sum(dim=1))
            levels.append(total / count.clamp_min(1)[:, None])
        return torch.stack(levels)

    def pair_weights(self, out, ctx) -> dict[int, torch.Tensor] | None:
        if ctx.phase == "query":  # the lookahead's outer objective counts every domain alike
            return None
        ratios = self.graph(self.prototypes(out))  # (levels, D)
        self.last = ratios.detach()
        scaled = ratios * len(self.domains)
        domains = out.batch.domain
        return {i: torch.stack([scaled[s, domains] for s, _ in term.pairs], dim=1) for i, term in self.terms.items()}

    def after_step(self, ctx, parts) -> None:
        if self.last is None or ctx.step % self.options.log_every:
            return
        ratios = self.last.cpu()
        ctx.log({f"hrkd/{d}/level{m}": float(ratios[m, i]) for i, d in enumerate(self.domains)
                 for m in range(self.levels)})
        self.history.append({"stage": ctx.stage.name, "step": ctx.step, "ratios": ratios.tolist()})

    def report(self) -> dict:
        if not self.history:
            return {"hrkd": {"domains": list(self.domains), "graph": self.options.graph, "history": []}}
        mean = torch.tensor([h["ratios"] for h in self.history]).mean(dim=0)  # (levels, D)
        return {"hrkd": {"domains": list(self.domains), "graph": self.options.graph, "levels": self.levels,
                         "mean_ratios": {d: mean[:, i].tolist() for i, d in enumerate(self.domains)},
                         "final_ratios": {d: [r[i] for r in self.history[-1]["ratios"]]
                                          for i, d in enumerate(self.domains)},
                         "history": self.history}}

    def save(self, run_directory) -> None:
        from safetensors.torch import save_file

        folder = Path(run_directory) / "hrkd"
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.graph.state_dict().items()},
                  str(folder / "graph.safetensors"))
        (folder / "ratios.json").write_text(json.dumps(self.report()["hrkd"], indent=1) + "\n")
        if self.history:
            plot_ratios(self.history, self.domains, folder / "ratios.png")

    def state_dict(self) -> dict:
        return {"graph": {k: v.detach().cpu().clone() for k, v in self.graph.state_dict().items()},
                "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():  # in place: the stage's optimizer holds these very parameters
            for name, value in self.graph.state_dict().items():
                value.copy_(state["graph"][name])
        self.history = list(state["history"])


def plot_ratios(history: list[dict], domains, path: Path, title: str = "HRKD domain weights") -> None:
    """One panel per level: each domain's ratio against the optimizer step (1/D is the unweighted share)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = len(history[0]["ratios"])
    steps, offset = [], 0  # optimizer steps counted across stages
    for i, h in enumerate(history):
        if i and h["stage"] != history[i - 1]["stage"]:
            offset = steps[-1]
        steps.append(offset + h["step"])
    fig, axes = plt.subplots(1, levels, figsize=(3.2 * levels, 3), sharey=True, squeeze=False)
    for m, ax in enumerate(axes[0]):
        for i, domain in enumerate(domains):
            ax.plot(steps, [h["ratios"][m][i] for h in history], label=domain)
        ax.axhline(1 / len(domains), color="grey", linewidth=0.5, linestyle="--")
        ax.set_title("embeddings" if m == 0 else f"layer {m}")
        ax.set_xlabel("optimizer step")
    axes[0][0].set_ylabel("ratio")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
