"""Student initialisers: what a recipe's `student.init` names. Each is registered in INITIALISERS as
`build(spec, teacher, teacher_tokenizer, num_labels, recipe) -> (model, tokenizer)`."""
from __future__ import annotations

from alembert.errors import AlembertError
from alembert.models.layout import find_layout
from alembert.models.loading import load_classifier
from alembert.models.students import extract_student, pick_layers, same_vocabulary, student_from_spec
from alembert.registry import INITIALISERS


@INITIALISERS.register("checkpoint")
def from_checkpoint(spec, teacher, teacher_tokenizer, num_labels, recipe):
    """Any Hugging Face checkpoint (a fresh head when it has none)."""
    return load_classifier(spec.source, num_labels, recipe.trust_remote_code)


@INITIALISERS.register("spec")
def from_spec(spec, teacher, teacher_tokenizer, num_labels, recipe):
    """A randomly initialised model of the teacher's architecture at the given size."""
    if teacher is None:
        raise AlembertError("student.init 'spec' builds in the teacher's architecture: set teacher")
    return student_from_spec(teacher, spec.layers, spec.hidden, spec.heads, spec.ffn, recipe.seed), teacher_tokenizer


@INITIALISERS.register("extract")
def by_extraction(spec, teacher, teacher_tokenizer, num_labels, recipe):
    """The teacher's (or `source`'s) embeddings, chosen layers and head."""
    source, tokenizer = (teacher, teacher_tokenizer)
    if spec.source:
        source, tokenizer = load_classifier(spec.source, num_labels, recipe.trust_remote_code)
        if teacher_tokenizer is not None and not same_vocabulary(tokenizer, teacher_tokenizer):
            raise AlembertError(
                f"student.source {spec.source}: its vocabulary ({len(tokenizer)} tokens) differs from the teacher's "
                f"({len(teacher_tokenizer)}); extract from a model that shares the teacher's tokenizer")
    layers = pick_layers(spec.extract, find_layout(source).num_layers, spec.layers, spec.layer_ids)
    return extract_student(source, layers), tokenizer


def build_student(recipe, teacher, teacher_tokenizer, num_labels: int):
    spec = recipe.student
    return INITIALISERS.get(spec.init, "student.init")(spec, teacher, teacher_tokenizer, num_labels, recipe)
