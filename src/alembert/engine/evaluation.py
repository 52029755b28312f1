"""Evaluation during training: named evaluation sets, the best state by the selection metric, early stopping.

The sets are 'dev' (the task's dev split) and, for a task given as one task per domain, 'dev/<domain>' each.
Metrics on the whole dev set are computed from one pass, split by domain where there are several.
"""
from __future__ import annotations

import copy

import numpy as np

from alembert.evaluation.scoring import metrics_of, predict


class Evaluator:
    def __init__(self, task, dev, batch_size: int):
        self.task, self.dev, self.batch_size = task, dev, batch_size
        self.domains = tuple(getattr(dev, "domains", ()))
        self._subsets: dict[str, object] = {}
        self.view = None  # a plugin's per-domain view of the student: see set_domain_view

    def set_domain_view(self, view) -> None:
        """For a student that answers per domain (a head per domain): `view(d)` is a context manager under which
        the model answers as domain d's model. Every example is then scored in its own domain's view, on 'dev'
        and on 'dev/<domain>' alike; without a view, the model is scored as it is."""
        self.view = view

    @property
    def names(self) -> list[str]:
        return ["dev", *(f"dev/{d}" for d in self.domains)] if len(self.domains) > 1 else ["dev"]

    def data(self, name: str):
        """The examples of a named set."""
        if name == "dev":
            return self.dev
        if name not in self._subsets:
            if not name.startswith("dev/") or name[4:] not in self.domains:
                raise KeyError(f"no evaluation set '{name}' (sets: {', '.join(self.names)})")
            d = self.domains.index(name[4:])
            self._subsets[name] = self.dev.subset([i for i, x in enumerate(self.dev.domain_ids) if x == d])
        return self._subsets[name]

    def score(self, model, name: str = "dev", data=None) -> dict[str, float]:
        """The task's metrics of `model` on a named set (or on `data`); on 'dev' of a multi-domain task, each
        domain's too, as '<domain>/<metric>'."""
        data = data if data is not None else self.data(name)
        logits = self._by_domain(model, data) if self.view is not None else predict(model, data, self.batch_size)
        metrics = metrics_of(self.task, data, logits)
        if name == "dev" and data is self.dev and len(self.domains) > 1:  # sequence classification only
            labels, ids = data.gold, np.asarray(data.domain_ids)
            for d, domain in enumerate(self.domains):
                rows = ids == d
                metrics.update({f"{domain}/{k}": v for k, v in
                                self.task.compute_metrics(logits[rows], labels[rows]).items()})
        return metrics


    def _by_domain(self, model, data) -> np.ndarray:
        """Each domain's examples predicted in that domain's view, put back in the data's order."""
        ids = np.asarray(data.domain_ids)
        logits = None
        for d in np.unique(ids).tolist():
            rows = np.flatnonzero(ids == d)
            with self.view(d):
                part = predict(model, data.subset(rows.tolist()), self.batch_size)
            if logits is None:
                logits = np.zeros((len(ids), *part.shape[1:]), dtype=part.dtype)
            logits[rows] = part
        return logits


class Selection:
    """The best state so far by the task's main metric, selected within the last evaluating stage (a later
    stage's model supersedes an earlier stage's best), and each stage's early-stopping count."""

    def __init__(self, main_metric: str):
        self.metric = main_metric
        self.best_metric = self.best_step = self.best_stage = None
        self.best_state = None
        self.history: list[dict] = []

    def update(self, stage: str, step: int, metrics: dict, model) -> float:
        self.history.append({"stage": stage, "step": step, **metrics})
        main = metrics[self.metric]
        if self.best_metric is None or main > self.best_metric or self.best_stage != stage:
            self.best_metric, self.best_step, self.best_stage = main, step, stage
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        return main

    def should_stop(self, spec, stage: str) -> bool:
        """Early stopping: `patience` evaluations of this stage without a gain of more than `min_delta`."""
        if spec is None:
            return False
        scores = [h[self.metric] for h in self.history if h["stage"] == stage]
        if len(scores) <= spec.patience:
            return False
        best_before = max(scores[:-spec.patience])
        return max(scores[-spec.patience:]) <= best_before + spec.min_delta

    def state(self) -> dict:
        return {"best_metric": self.best_metric, "best_step": self.best_step, "best_stage": self.best_stage,
                "history": self.history}

    def restore(self, state: dict, best_state) -> None:
        for key in ("best_metric", "best_step", "best_stage", "history"):
            setattr(self, key, state[key])
        self.best_state = best_state
