"""MiniLM's teacher assistant: first distil the teacher into a model of the teacher's depth and the student's
width with the recipe's stages, then distil that assistant into the student with the same stages. The assistant
starts from the teacher's own layers, narrowed by Extract-Then-Distill."""
from __future__ import annotations

from alembert.engine.loop import Trainer
from alembert.models.layout import find_layout
from alembert.models.initialisers import importance_batches
from alembert.models.students import extract_student, pick_layers, student_from_spec
from alembert.recipe import Recipe, recipe_from_dict


def assistant_model(recipe: Recipe, teacher, student, tokenizer=None, examples=()):
    """The teacher's depth, the student's width (unless the recipe's assistant says otherwise). init 'extract'
    (default): the teacher's layers (uniformly chosen when fewer), narrowed by Extract-Then-Distill, the hidden
    dimensions, heads and FFN neurons kept by the student's `select` rule (importance on a seeded sample of the
    training examples, or at random), so the assistant starts from what the teacher knows; 'spec': random weights."""
    spec, teacher_layout, student_layout = recipe.assistant, find_layout(teacher), find_layout(student)
    layers = spec.layers or teacher_layout.num_layers
    hidden, heads = spec.hidden or student_layout.hidden_size, spec.heads or student_layout.num_heads
    if spec.init == "spec":
        return student_from_spec(teacher, layers, hidden, heads, spec.ffn, recipe.seed)
    narrower = hidden < teacher_layout.hidden_size or heads < teacher_layout.num_heads or spec.ffn is not None
    batches = None
    if narrower and recipe.student.select == "importance":
        batches = importance_batches(teacher, tokenizer, examples, recipe.student.importance_examples, recipe)
    ids = pick_layers("uniform", teacher_layout.num_layers, layers, None)
    return extract_student(teacher, ids, hidden, heads, spec.ffn, recipe.student.select, batches, recipe.seed)


def assistant_recipe(recipe: Recipe) -> Recipe:
    """The recipe's stages, renamed, for training the assistant (its logs and evaluations say so)."""
    data = recipe.model_dump()
    data["stages"] = [dict(stage, name=f"assistant-{stage['name']}") for stage in data["stages"]]
    data["assistant"] = None
    return recipe_from_dict(data, f"{recipe.name} (teacher assistant)")


def train_assistant(recipe: Recipe, inputs, teachers: list, logger, plan, found, log):
    """The trained assistant: from the checkpoint when the interrupted run had finished it, else trained now."""
    from alembert.pipelines.run import make_plugins

    assistant = assistant_model(recipe, teachers[0], inputs.student, inputs.teachers[0][1], inputs.train_examples)
    if found is not None and found[1]["phase"] == "student":  # trained before the interruption
        assistant.load_state_dict(found[2]["assistant"])
        return assistant
    trained = assistant_recipe(recipe)
    Trainer(trained, inputs.task, assistant, teachers, inputs.sources, inputs.pad_ids, inputs.dev, logger,
            make_plugins(trained), plan("assistant", {}), log).fit()
    return assistant
