"""The real all-MiniLM-L6-v2 teacher on a small SST-2 slice: distillation brings the student's predictions
closer to the teacher's on held-out data than training on the labels alone."""
import numpy as np
import pytest
import torch

from alembert import api
from alembert.data.encoded import EncodedExamples
from alembert.evaluation.scoring import predict
from alembert.models.initialisers import build_student
from alembert.models.loading import load_classifier
from alembert.recipe import recipe_from_dict
from alembert.tasks import get_task
from conftest import skip_without_minilm_and_data

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sst2_teacher(tmp_path_factory):
    skip_without_minilm_and_data()
    out = tmp_path_factory.mktemp("runs")
    run = api.finetune("sentence-transformers/all-MiniLM-L6-v2", "sst2", name="teacher", output_dir=str(out),
                       epochs=2, lr=1e-4, batch_size=32, max_length=32, train_limit=800, seed=0, speed=False)
    return out, run


def _kl_to_teacher(student_dir, teacher_dir, examples) -> float:
    teacher, tokenizer = load_classifier(teacher_dir)
    student, _ = load_classifier(student_dir)
    data = EncodedExamples(examples, tokenizer, 32)
    p_t = torch.log_softmax(torch.from_numpy(predict(teacher, data)), -1)
    p_s = torch.log_softmax(torch.from_numpy(predict(student, data)), -1)
    return float((p_t.exp() * (p_t - p_s)).sum(-1).mean())


def test_distillation_lowers_held_out_kl(sst2_teacher):
    out, teacher = sst2_teacher
    assert teacher.report["models"][0]["metrics"]["accuracy"] > 70  # the teacher learned the task
    runs = {}
    for name, alpha in (("kd", 1.0), ("labels", 0.0)):
        recipe = recipe_from_dict({
            "name": name, "task": "sst2", "output_dir": str(out), "max_length": 32, "train_limit": 800,
            "seed": 0, "speed": False, "teacher": str(teacher.student_dir) if alpha else None,
            "student": {"init": "extract", "extract": "first", "layers": 2, "source": str(teacher.student_dir)},
            "stages": [{"name": "train", "epochs": 3, "lr": 2e-4,
                        "losses": [{"type": "prediction", "alpha": alpha, "temperature": 1.0}]}],
        })
        runs[name] = api.distill(recipe)
    held_out = get_task("sst2").load("dev", limit=300, seed=1)
    kl_kd = _kl_to_teacher(runs["kd"].student_dir, teacher.student_dir, held_out)
    kl_labels = _kl_to_teacher(runs["labels"].student_dir, teacher.student_dir, held_out)
    assert np.isfinite(kl_kd) and kl_kd < kl_labels


def _relation_kl(student, teacher, examples, tokenizer) -> float:
    """The last-layer Q/K/V relation KL of `student` to `teacher` on `examples` (one batch, real tokens)."""
    from alembert.engine.objective import Objective
    from alembert.models.features import FeatureTap
    from alembert.models.layout import find_layout
    from alembert.recipe import stage_from_dict

    stage = stage_from_dict({"name": "probe", "losses": [{"type": "relation"}]})
    objective = Objective(stage, find_layout(student), find_layout(teacher), regression=False)
    data = EncodedExamples(examples, tokenizer, 32)
    batch = data.collate([data[i] for i in range(len(data))])
    with torch.no_grad(), FeatureTap(student.eval(), objective.student_request) as s, \
            FeatureTap(teacher.eval(), objective.teacher_request) as t:
        return objective(s.run(batch.inputs()), [t.run(batch.inputs())], batch.labels, batch.label_mask)[1]["relation"]


def test_crild_stage_on_task_and_supplementary_text_brings_relations_closer(sst2_teacher):
    """CR-ILD's ILD stage (MixUp, consistency, last-layer Q/K/V relations) on SST-2 plus WikiText sentences
    lowers the student's relation KL to the real teacher on held-out sentences."""
    out, teacher_run = sst2_teacher
    recipe = recipe_from_dict({
        "name": "crild-ild", "task": "sst2", "output_dir": str(out), "max_length": 32, "train_limit": 400,
        "seed": 0, "speed": False, "teacher": str(teacher_run.student_dir),
        "student": {"init": "extract", "layers": 2},
        "sources": {"wiki": {"type": "text", "files": ["corpus/wikitext-2/valid.txt"], "limit": 200}},
        "stages": [{"name": "ild", "epochs": 1, "lr": 1e-4, "data": "task+wiki", "losses": [{"type": "relation"}],
                    "plugins": [{"type": "mixup", "alpha": 1.0}, {"type": "consistency", "weight": 0.1,
                                                                   "ramp": False}]}],
    })
    run = api.distill(recipe)
    assert run.report["data"]["sources"] == {"wiki": 200}
    teacher, tokenizer = load_classifier(teacher_run.student_dir)
    start, _ = build_student(recipe, teacher, tokenizer, 2)
    trained, _ = load_classifier(run.student_dir)
    held_out = get_task("sst2").load("dev", limit=64, seed=1)
    before, after = (_relation_kl(m, teacher, held_out, tokenizer) for m in (start, trained))
    assert np.isfinite(after) and after < 0.8 * before
