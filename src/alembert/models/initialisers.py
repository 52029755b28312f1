"""Student initialisers: what a recipe's `student.init` names. Each is registered in INITIALISERS as
`build(spec, teacher, teacher_tokenizer, num_labels, recipe, examples) -> (model, tokenizer)`, where `examples` are
the run's training examples (ETD-Impt scores the teacher on a sample of them)."""
from __future__ import annotations

import random

from alembert.errors import AlembertError
from alembert.models.heads import loss_targets
from alembert.models.layout import find_layout, takes_token_types
from alembert.models.loading import load_classifier
from alembert.models.students import extract_student, pick_layers, same_vocabulary, student_from_spec
from alembert.registry import INITIALISERS
from alembert.tasks.kinds import kind_of


@INITIALISERS.register("checkpoint")
def from_checkpoint(spec, teacher, teacher_tokenizer, num_labels, recipe, examples=()):
    """Any Hugging Face checkpoint (a fresh head when it has none, or one of another kind than the task's, which
    `kind_of(examples)` tells)."""
    return load_classifier(spec.source, num_labels, recipe.trust_remote_code, kind=kind_of(examples))


@INITIALISERS.register("spec")
def from_spec(spec, teacher, teacher_tokenizer, num_labels, recipe, examples=()):
    """A randomly initialised model of the teacher's architecture at the given size."""
    if teacher is None:
        raise AlembertError("student.init 'spec' builds in the teacher's architecture: set teacher")
    return student_from_spec(teacher, spec.layers, spec.hidden, spec.heads, spec.ffn, recipe.seed), teacher_tokenizer


@INITIALISERS.register("extract")
def by_extraction(spec, teacher, teacher_tokenizer, num_labels, recipe, examples=()):
    """The teacher's (or `source`'s) embeddings, chosen layers and head; with hidden, heads or ffn below the
    source's, a slice of its width too (Extract-Then-Distill): kept at random (select: random, ETD-Rand) or by
    their importance to the task loss on a seeded sample of the training examples (select: importance, ETD-Impt)."""
    source, tokenizer = (teacher, teacher_tokenizer)
    if spec.source:
        source, tokenizer = load_classifier(spec.source, num_labels, recipe.trust_remote_code,
                                            kind=kind_of(examples))
        if teacher_tokenizer is not None and not same_vocabulary(tokenizer, teacher_tokenizer):
            raise AlembertError(
                f"student.source {spec.source}: its vocabulary ({len(tokenizer)} tokens) differs from the teacher's "
                f"({len(teacher_tokenizer)}); extract from a model that shares the teacher's tokenizer")
    layout = find_layout(source)
    layers = pick_layers(spec.extract, layout.num_layers, spec.layers, spec.layer_ids)
    narrower = any(v is not None for v in (spec.hidden, spec.heads, spec.ffn))
    batches = None
    if narrower and spec.select == "importance":
        batches = importance_batches(source, tokenizer, examples, spec.importance_examples, recipe)
    return extract_student(source, layers, spec.hidden, spec.heads, spec.ffn, spec.select, batches,
                           recipe.seed), tokenizer


def importance_batches(model, tokenizer, examples, count: int, recipe, batch_size: int = 32) -> list[dict]:
    """A seeded sample of labelled training examples as the batches ETD-Impt takes the loss's gradients on."""
    from alembert.data.encoded import encode_examples

    labelled = [e for e in examples if e.label is not None]
    if not labelled:
        raise AlembertError("student.select: importance needs labelled training examples (use select: random)")
    sample = random.Random(recipe.seed).sample(labelled, min(count, len(labelled)))
    data = encode_examples(sample, tokenizer, recipe.max_length)
    keep = takes_token_types(model)
    batches = []
    for start in range(0, len(data), batch_size):
        batch = data.collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
        inputs = {k: v for k, v in batch.inputs().items() if k != "token_type_ids" or keep}
        batches.append(dict(inputs, **loss_targets(data.kind, batch.labels)))
    return batches


def build_student(recipe, teacher, teacher_tokenizer, num_labels: int, examples=()):
    spec = recipe.student
    return INITIALISERS.get(spec.init, "student.init")(spec, teacher, teacher_tokenizer, num_labels, recipe,
                                                       examples)
