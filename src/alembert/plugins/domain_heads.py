"""One student with a classification head per domain (HRKD's student: a shared encoder, one head per domain).

The heads are copies of the student's own head (`classifier`, whatever its shape in the family: a Linear for BERT,
dense + out_proj for RoBERTa or MPNet); domain 0's head is the student's own, the others live in a submodule of the
student, so the stage's optimizer, checkpoints, `--resume` and the best-state selection all carry them with the
student. A forward hook on the student's head answers each example with its domain's head:
- in training, the examples' domain ids (`around_forward`), so the objective's prediction losses see each
  example's logits from its own domain's head;
- in evaluation, a domain view given to the evaluator (`set_domain_view`): each domain's dev examples are scored
  by its own head, the run's metric is the whole dev set's, each domain's beside it.
Outside these (a plugin's `ctx.student_logits(batch)`), the student answers with domain 0's head.

At the end each domain's model is written as a standard Hugging Face checkpoint, `domains/<domain>/` (the shared
encoder and that domain's head: `AutoModelForSequenceClassification` loads it), and the student's extra heads are
removed, so `student/` is the first domain's model.

    plugins: [{type: domain_heads}]
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from alembert.engine.plugins import Plugin
from alembert.errors import AlembertError
from alembert.recipe import PluginOptions
from alembert.registry import PLUGINS

HEADS = "alembert_domain_heads"  # the student's submodule holding the heads of domains 1..D-1


def task_domains(task) -> tuple[str, ...]:
    """The run's domains: a task given as one task per domain names them; any other task is one domain."""
    return tuple(getattr(task, "domains", ()) or ())


@PLUGINS.register("domain_heads")
class DomainHeads(Plugin):
    class Options(PluginOptions):
        pass

    def setup(self, ctx) -> None:
        self.domains = task_domains(ctx.task)
        if len(self.domains) < 2:
            raise AlembertError(f"plugins: domain_heads needs a task given as one task per domain (a list of "
                                f"tasks); {ctx.task.name} is one domain")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            raise AlembertError("plugins: domain_heads runs in one process; run it without accelerate launch")
        student = ctx.student
        head = getattr(student, "classifier", None)
        if not isinstance(head, nn.Module):
            raise AlembertError(f"plugins: domain_heads: the student ({type(student).__name__}) has no `classifier` "
                                "module to copy for each domain")
        if not hasattr(student, HEADS):  # a resumed run restores the heads' weights into these
            import copy

            student.add_module(HEADS, nn.ModuleList(copy.deepcopy(head) for _ in self.domains[1:]))
        self.student, self.head = student, head
        self.prefix = next(name for name, module in student.named_modules() if module is head)
        self.tokenizer = getattr(ctx.sources.get("task"), "tokenizers", None)
        self.current: torch.Tensor | None = None  # the batch's domain ids while the models run
        self.fixed: int | None = None  # one domain for every example (evaluation)
        self.handle = head.register_forward_hook(self._route)
        ctx.evaluator.set_domain_view(self.view)

    @property
    def heads(self) -> list[nn.Module]:
        return [self.head, *getattr(self.student, HEADS)]

    def _route(self, module, args, output):
        if self.fixed is not None:
            return output if self.fixed == 0 else self.heads[self.fixed](*args)
        if self.current is None:
            return output
        answers = torch.stack([output] + [head(*args) for head in self.heads[1:]])  # (D, B, C)
        return answers[self.current.to(answers.device), torch.arange(answers.shape[1], device=answers.device)]

    @contextmanager
    def around_forward(self, batch, ctx):
        self.current = batch.domain
        try:
            yield batch
        finally:
            self.current = None

    @contextmanager
    def view(self, domain: int):
        """The student answers as domain `domain`'s model."""
        self.fixed = domain
        try:
            yield
        finally:
            self.fixed = None

    def domain_state(self, domain: int) -> dict:
        """The state dict of domain `domain`'s model: the shared encoder with that domain's head as `classifier`."""
        state = {k: v for k, v in self.student.state_dict().items() if not k.startswith(HEADS + ".")}
        state.update({f"{self.prefix}.{k}": v for k, v in self.heads[domain].state_dict().items()})
        return state

    def report(self) -> dict:
        return {"domain_heads": {"domains": list(self.domains),
                                 "models": {d: f"domains/{d}" for d in self.domains},
                                 "student_is": self.domains[0]}}

    def save(self, run_directory) -> None:
        """Each domain's model as a standard checkpoint, then the student back to its own head (domain 0's)."""
        self.handle.remove()
        for d, name in enumerate(self.domains):
            folder = Path(run_directory) / "domains" / name
            self.student.save_pretrained(folder, state_dict=self.domain_state(d), safe_serialization=True)
            if self.tokenizer is not None:
                self.tokenizer.student.save_pretrained(folder)
            (folder / "README.md").write_text(
                f"# Domain {name}\n\nThe student of run `{Path(run_directory).name}` with domain `{name}`'s head: the "
                f"encoder is shared by the domains {', '.join(self.domains)}; each has its own head. Load it with "
                "`AutoModelForSequenceClassification.from_pretrained(...)`.\n", encoding="utf-8")
        del self.student._modules[HEADS]
