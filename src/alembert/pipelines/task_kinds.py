"""What a run of token classification or extractive QA cannot do, said before any work: the parts of a recipe that
read a single class label per example, mix inputs, or bring text without tags or answers."""
from __future__ import annotations

from alembert.errors import AlembertError
from alembert.tasks.kinds import SEQUENCE, TOKENS


def check_recipe_for_kind(recipe, task) -> None:
    if task.kind == SEQUENCE:
        return
    what = f"task {task.name} is {task.kind}"
    if recipe.stress is not None:
        raise AlembertError(f"stress: the stress transforms change class labels; {what} (use train_limit for fewer "
                            "examples)")
    if recipe.combine.rule == "confidence":
        raise AlembertError(f"combine.rule: confidence weighs teachers by a class label per example; {what} (use "
                            "mean or fixed)")
    for i, stage in enumerate(recipe.stages):
        for plugin in recipe.stage_plugins(stage):
            if plugin.mixes_inputs or plugin.type == "rl_kd":
                raise AlembertError(f"stages.{i}.plugins: {plugin.type} "
                                    f"{'mixes inputs' if plugin.mixes_inputs else 'rewards by class labels'}, "
                                    f"which needs one label per example; {what}")
    for name, spec in recipe.sources.items():
        if spec.type != "task" or not spec.labels:
            raise AlembertError(f"sources.{name}: {what}, which trains on labelled examples of its own kind (a task "
                                "source with labels: true)")


def check_teacher_tokenizers(own: list, task) -> None:
    """Token classification and QA compare per token: every teacher must read the student's tokens."""
    if task.kind != SEQUENCE and any(tok is not None for tok in own):
        raise AlembertError(f"teachers: task {task.name} is {task.kind}, whose losses compare each token: every "
                            "teacher must share the student's vocabulary (a teacher with its own tokenizer cuts "
                            "other tokens)")


def name_labels(model, task) -> None:
    """A token classifier's config names its tags (id2label), so pipelines show them instead of LABEL_3."""
    if task.kind == TOKENS:
        model.config.id2label = dict(enumerate(task.label_names))
        model.config.label2id = {tag: i for i, tag in enumerate(task.label_names)}
