"""Benchmark: training throughput of TinyBERT-style distillation, TextBrewer against a plain loop and alembert.

Four systems train the same 2-layer student (extracted from a fine-tuned all-MiniLM-L6-v2 teacher) on the same
SST-2 slice, batch size, learning rate, schedule and losses (hidden-state MSE with embeddings and attention MSE
on the uniform layer map, soft cross-entropy on the logits at T = 1, all weights 1, one stage):
  (a) textbrewer       TextBrewer's GeneralDistiller (eager attention: it reads HF's attention outputs)
  (b) plain            a hand-written PyTorch loop, what a user would write (eager attention too)
  (c) alembert-live    alembert's engine, teacher run live (recipe teacher_cache: false)
  (d) alembert-cached  alembert's engine reading its teacher-output cache (teacher_cache: true, built untimed)

Throughput: R rounds; in each, every system trains K steps from the same init, round-robin, each trial in a fresh
subprocess (so peak RSS is its own); only training steps are timed. Quality: one full run of E epochs per
system, scored on SST-2 dev. MFU: model FLOPs per example (FlopCounterMode) over the best large-matmul FLOP/s.

    .venv/bin/python benchmarks/training_throughput.py [--rounds 3 --steps 30 --epochs 2 --train-limit 2000]
    .venv/bin/python benchmarks/training_throughput.py --quick          # smoke test, writes under /tmp only
    .venv/bin/python benchmarks/training_throughput.py --summarise-only # rebuild the .md from the .json

Writes benchmarks/results/training_throughput.json (every trial, machine, settings) and .md (the table).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars of transformers, alembert and TextBrewer: ours suffice
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from accelerate.utils import set_seed  # noqa: E402
from transformers import get_linear_schedule_with_warmup  # noqa: E402

from alembert.data.encoded import EncodedExamples, StageData  # noqa: E402
from alembert.data.samplers import Shuffled  # noqa: E402
from alembert.evaluation.scoring import score  # noqa: E402
from alembert.mapping import attention_map, layer_map  # noqa: E402
from alembert.models.loading import load_classifier, load_tokenizer  # noqa: E402
from alembert.recipe import recipe_from_dict  # noqa: E402
from alembert.tasks import get_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = {"textbrewer": "(a) TextBrewer GeneralDistiller", "plain": "(b) plain PyTorch loop",
           "alembert-live": "(c) alembert, live teacher", "alembert-cached": "(d) alembert, teacher cache"}
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
STUDENT_LAYERS = 2


# ---------------------------------------------------------------- shared by the workers

def make_loader(data, batch_size: int, seed: int = 0, group_by_length: bool = False):
    """alembert's stage order over `data` (its shuffled sampler), as the dict batches a plain loop and TextBrewer
    take: the token tensors, 'index' and 'labels'."""
    stage = StageData({"task": data}, data.tokenizers.pad_ids())
    sampler = Shuffled(stage, batch_size, torch.Generator().manual_seed(seed), group_by_length=group_by_length)

    def collate(items):
        batch = stage.collate(items)
        return {**batch.inputs(), "index": batch.example_id, "labels": batch.labels}

    return torch.utils.data.DataLoader(stage, batch_sampler=sampler, collate_fn=collate)

def load_eager(path: str):
    model, _ = load_classifier(path, 2)
    model.config._attn_implementation = "eager"  # under SDPA, HF returns an empty tuple of attentions
    return model


def layer_pairs(student, teacher):
    """(student, teacher) pairs: hidden states 0..L (0 = embeddings), attention layers 1..L; alembert's maps."""
    depths = (student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    return layer_map("uniform", *depths), attention_map("uniform", *depths)


def make_optimizer(student, s):
    """AdamW grouped as alembert groups it (no weight decay on biases and LayerNorm), so all four match."""
    params = [p for p in student.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in params if p.ndim > 1], "weight_decay": 0.01},
                              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}], lr=s["lr"])


def batches(loader):
    while True:  # a new shuffle each pass, as every system does between epochs
        yield from loader


def run_plain(s, teacher, student, loader, total_steps):
    hidden, attention = layer_pairs(student, teacher)
    optimizer = make_optimizer(student, s)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(s["warmup"] * total_steps), total_steps)
    teacher.eval()
    student.train()
    seen, start = 0, time.perf_counter()
    for _, batch in zip(range(total_steps), batches(loader)):
        inputs = {k: batch[k] for k in MODEL_INPUTS}
        with torch.no_grad():
            t = teacher(**inputs, output_hidden_states=True, output_attentions=True)
        out = student(**inputs, output_hidden_states=True, output_attentions=True)
        # the same losses as alembert's: token terms average over real tokens (pairs of them for attention)
        mask = inputs["attention_mask"].float()
        pairs = mask[:, None, :, None] * mask[:, None, None, :]
        loss = -(t.logits.softmax(-1) * out.logits.log_softmax(-1)).sum(-1).mean()  # soft CE, T = 1
        loss = loss + sum(((out.hidden_states[i] - t.hidden_states[j]).pow(2).sum(-1) * mask).sum()
                          / (mask.sum() * t.hidden_states[j].shape[-1]) for i, j in hidden)
        loss = loss + sum((((out.attentions[i - 1] - t.attentions[j - 1]).pow(2) * pairs).sum((1, 2, 3))
                           / (pairs.sum((1, 2, 3)) * pairs.new_tensor(t.attentions[j - 1].shape[1]))).mean()
                          for i, j in attention)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(batch["index"])
    return time.perf_counter() - start, seen, {}


def run_textbrewer(s, teacher, student, loader, total_steps, epochs):
    import textbrewer

    hidden, attention = layer_pairs(student, teacher)
    matches = [{"layer_S": i, "layer_T": j, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
               for i, j in hidden]
    matches += [{"layer_S": i - 1, "layer_T": j - 1, "feature": "attention", "loss": "attention_mse", "weight": 1}
                for i, j in attention]  # indices into HF's attentions tuple, which is 0-based
    out_dir = tempfile.mkdtemp(prefix="textbrewer-")  # it always saves the student's state_dict at the end
    train_cfg = textbrewer.TrainingConfig(device="cpu", output_dir=out_dir, log_dir=None,
                                          ckpt_steps=total_steps, ckpt_epoch_frequency=10 ** 6)
    distill_cfg = textbrewer.DistillationConfig(temperature=1, kd_loss_type="ce", kd_loss_weight=1,
                                                hard_label_weight=0, intermediate_matches=matches)

    def adaptor(batch, out):  # with 'inputs_mask' its token losses average over real tokens, as alembert's do
        return {"logits": out.logits, "hidden": out.hidden_states, "attention": out.attentions,
                "inputs_mask": batch["attention_mask"]}

    distiller = textbrewer.GeneralDistiller(train_cfg, distill_cfg, teacher, student, adaptor, adaptor)
    saving, seen, original = [0.0], [0], distiller.save_and_callback

    def timed_save(*args, **kwargs):  # the checkpoint write is not training: time it apart
        t0 = time.perf_counter()
        original(*args, **kwargs)
        saving[0] += time.perf_counter() - t0

    def inputs_only(batch):  # it calls model(**batch): drop our 'index' and 'labels'
        seen[0] += len(batch["index"])
        return {k: batch[k] for k in MODEL_INPUTS}

    distiller.save_and_callback = timed_save
    length = {"num_steps": total_steps} if epochs is None else {"num_epochs": epochs}
    schedule = {"num_warmup_steps": round(s["warmup"] * total_steps), "num_training_steps": total_steps}
    optimizer = make_optimizer(student, s)
    with distiller:  # the context sets teacher.eval() / student.train(); train() itself does not
        start = time.perf_counter()
        distiller.train(optimizer, loader, scheduler_class=get_linear_schedule_with_warmup, scheduler_args=schedule,
                        max_grad_norm=1.0, batch_postprocessor=inputs_only, output_hidden_states=True,
                        output_attentions=True, **length)
        seconds = time.perf_counter() - start - saving[0]
    saved = sorted(p.name for p in Path(out_dir).iterdir())
    shutil.rmtree(out_dir, ignore_errors=True)
    return seconds, seen[0], {"checkpoint_save_seconds": saving[0], "textbrewer_saved": saved}


def alembert_recipe(s, system, mode) -> dict:
    # ceil(epochs * batches) optimizer steps: (K - 0.5) / batches gives exactly K despite float rounding;
    # 'warm' passes over the data a little more than once, the engine's condition for building its cache
    epochs = {"full": s["epochs"], "steps": (s["steps"] - 0.5) / s["steps_per_epoch"],
              "warm": 1 + 0.5 / s["steps_per_epoch"]}[mode]
    losses = [{"type": "hidden_mse", "map": "uniform", "embeddings": True}, {"type": "attention_mse", "map": "uniform"},
              {"type": "prediction", "alpha": 1.0, "temperature": 1.0, "kd": "soft_ce", "tau_squared": False}]
    recipe = {"name": f"{system}-{mode}", "task": "sst2", "teacher": s["teacher_dir"],
              "student": {"init": "checkpoint", "source": s["student_dir"]}, "data_dir": s["data_dir"],
              "output_dir": str(Path(s["work_dir"]) / "alembert-runs"), "max_length": s["max_length"],
              "batch_size": s["batch_size"], "train_limit": s["train_limit"], "seed": s["seed"], "speed": False,
              "dev_limit": s["dev_limit"] if mode == "full" else 16,  # scored after training, untimed
              "teacher_cache": system == "alembert-cached", "cache_dir": str(Path(s["work_dir"]) / "cache"),
              "stages": [{"name": "distill", "epochs": epochs, "lr": s["lr"], "warmup": s["warmup"],
                          "max_grad_norm": 1.0, "evaluate": False, "losses": losses}]}
    if s["group_by_length"] is not None:
        recipe["group_by_length"] = s["group_by_length"]
    return recipe


def run_alembert(s, system, mode):
    from alembert import api

    report = api.distill(recipe_from_dict(alembert_recipe(s, system, mode), "benchmark recipe"), overwrite=True).report
    training, notes = report["training"], []
    seconds = training.get("train_seconds")
    if seconds is None:
        seconds = training["seconds"]
        notes.append("report has no training.train_seconds: timed by training.seconds (the whole fit)")
    extra = {"fit_seconds": training.get("seconds"), "cache_build_seconds": training.get("cache_build_seconds"),
             "teacher_cache": report.get("teacher_cache"), "notes": notes,
             "recipe": {k: report["recipe"].get(k) for k in ("teacher_cache", "group_by_length", "compile")}}
    if mode == "full":
        extra["accuracy"] = next(m for m in report["models"] if m["name"] == "student")["metrics"]["accuracy"]
    return seconds, training.get("examples_seen"), extra


def peak_rss_mib() -> tuple[float | None, float]:
    """This process's peak RSS. Linux carries ru_maxrss across exec, so a worker forked from this (big) parent
    reports the parent's peak there; /proc's VmHWM is the worker's own address space, so it is the one used."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    status = Path("/proc/self/status")
    hwm = next((int(x.split()[1]) / 1024 for x in status.read_text().splitlines() if x.startswith("VmHWM:")),
               None) if status.exists() else None
    return (hwm if hwm is not None else maxrss), maxrss


def worker(system: str, mode: str, settings_path: str) -> None:
    """One timed trial (mode 'steps') or one full run ('full'); prints one JSON line starting with RESULT."""
    s = json.loads(Path(settings_path).read_text())
    out, start = {"system": system, "mode": mode}, time.perf_counter()
    try:
        set_seed(s["seed"])
        if system.startswith("alembert"):
            seconds, seen, extra = run_alembert(s, system, mode)
        else:
            teacher, student = load_eager(s["teacher_dir"]), load_eager(s["student_dir"])
            task, tokenizer = get_task("sst2", s["data_dir"]), load_tokenizer(s["student_dir"])
            load = lambda split, limit: EncodedExamples(task.load(split, limit, s["seed"]), tokenizer, s["max_length"])
            train, dev = load("train", s["train_limit"]), load("dev", s["dev_limit"])
            loader = make_loader(train, s["batch_size"], seed=s["seed"])  # alembert's stage-0 order
            total = s["steps"] if mode == "steps" else s["epochs"] * len(loader)
            set_seed(s["seed"])
            if system == "textbrewer":
                seconds, seen, extra = run_textbrewer(s, teacher, student, loader, total,
                                                      None if mode == "steps" else s["epochs"])
            else:
                seconds, seen, extra = run_plain(s, teacher, student, loader, total)
            if mode == "full":
                extra["accuracy"] = score(student, dev, task, 128)["accuracy"]
        out.update(train_seconds=seconds, examples=seen, examples_per_s=seen / seconds if seen else None, **extra)
    except Exception as err:  # report what failed; the parent carries on with the other systems
        traceback.print_exc()
        out["error"] = f"{type(err).__name__}: {err}"
    out["peak_rss_mib"], out["ru_maxrss_mib"] = peak_rss_mib()
    out["wall_seconds"] = time.perf_counter() - start
    print("RESULT " + json.dumps(out), flush=True)


# ---------------------------------------------------------------- the parent: setup, trials, tables
def run_worker(system: str, mode: str, settings_path: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", system, "--mode", mode,
           "--settings", str(settings_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith("RESULT ")), None)
    result = json.loads(line[len("RESULT "):]) if line else {
        "system": system, "mode": mode, "error": f"worker exited {proc.returncode} without a result"}
    if "error" in result:
        print(f"  {system} {mode} failed: {result['error']}\n  stderr tail:\n" +
              "\n".join("    " + x for x in proc.stderr.strip().splitlines()[-15:]), flush=True)
    return result


def report(res: dict, start: float, what: str) -> dict:
    if "examples_per_s" in res:
        cache = res.get("teacher_cache") or {}
        print(f"[{time.time() - start:.0f}s] {what} {res['system']}: {res['examples_per_s']:.1f} examples/s "
              f"({res['examples']} in {res['train_seconds']:.2f} s), peak RSS {res['peak_rss_mib']:.0f} MiB"
              + (f", dev accuracy {res['accuracy']:.1f}" if "accuracy" in res else "")
              + (f", cache {'on' if cache.get('enabled') else 'off'}" if res["system"] == "alembert-cached" else ""),
              flush=True)
    return res


def ensure_teacher(args, work: Path) -> str:
    from alembert import api

    run = work / "teacher"
    if (run / "student" / "config.json").is_file():
        print(f"reusing teacher {run / 'student'}", flush=True)
    else:
        print(f"fine-tuning the teacher on {args.teacher_train_limit} SST-2 sentences into {run}", flush=True)
        api.finetune("sentence-transformers/all-MiniLM-L6-v2", "sst2", name="teacher", output_dir=str(work),
                     epochs=1, lr=1e-4, max_length=64, train_limit=args.teacher_train_limit, seed=args.seed,
                     data_dir=args.data_dir, speed=False, overwrite=True)
    return str(run / "student")


def peak_matmul() -> dict:
    """Best FLOP/s of a large square torch.mm per dtype: the machine's attainable peak for MFU."""
    result = {}
    for dtype in (torch.float32, torch.bfloat16):
        best = {"flops_per_s": 0.0}
        for n in (2048, 4096):
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            torch.mm(a, b)  # warm-up
            for _ in range(3):
                t0 = time.perf_counter()
                torch.mm(a, b)
                seconds = time.perf_counter() - t0
                if 2 * n ** 3 / seconds > best["flops_per_s"]:
                    best = {"flops_per_s": 2 * n ** 3 / seconds, "n": n}
            if seconds > 2:  # slow dtype on this machine: do not try larger
                break
        result[str(dtype).removeprefix("torch.")] = best
    return result


def model_flops(teacher_dir: str, student_dir: str, length: int, batch: int) -> dict:
    """FLOPs per example: student forward + backward (train mode), teacher forward (no grad), eager attention."""
    from torch.utils.flop_counter import FlopCounterMode

    teacher, student = load_eager(teacher_dir), load_eager(student_dir)
    inputs = {"input_ids": torch.randint(1000, 20000, (batch, length)), "token_type_ids": torch.zeros(
        batch, length, dtype=torch.long), "attention_mask": torch.ones(batch, length, dtype=torch.long)}
    student.train()
    with FlopCounterMode(display=False) as counter:
        student(**inputs).logits.sum().backward()
    student_fb = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        teacher.eval()(**inputs)
    return {"student_fwd_bwd": student_fb / batch, "teacher_fwd": counter.get_total_flops() / batch,
            "length": length}


def prepare(args, work: Path) -> dict:
    from alembert.models.layout import find_layout
    from alembert.models.students import extract_student, pick_layers

    teacher_dir = args.teacher or ensure_teacher(args, work)
    teacher, tokenizer = load_classifier(teacher_dir, 2)
    student_dir = work / "student-init"  # one extracted student, loaded by every trial: the same init for all
    layers = pick_layers("uniform", find_layout(teacher).num_layers, STUDENT_LAYERS, None)
    student = extract_student(teacher, layers)
    student.save_pretrained(student_dir)
    tokenizer.save_pretrained(student_dir)
    hidden, attention = layer_pairs(student, teacher)
    train = EncodedExamples(get_task("sst2", args.data_dir).load("train", args.train_limit, args.seed),
                            tokenizer, args.max_length)
    loader = make_loader(train, args.batch_size, seed=args.seed)
    padded = sum(b["input_ids"].numel() for b in loader) / len(train)  # tokens computed per example
    try:  # alembert's length-grouped batches, when its engine has them
        grouped = make_loader(train, args.batch_size, seed=args.seed, group_by_length=True)
        padded_grouped = sum(b["input_ids"].numel() for b in grouped) / len(train)
    except TypeError:
        padded_grouped = None
    mean_len = statistics.mean(len(train[i]["student"]["input_ids"]) for i in range(len(train)))
    teacher_report = Path(teacher_dir).parent / "report.json"
    teacher_acc = None
    if teacher_report.is_file():
        teacher_acc = next(m for m in json.loads(teacher_report.read_text())["models"]
                           if m["name"] == "student")["metrics"].get("accuracy")
    print(f"slice: {len(train)} examples, mean {mean_len:.1f} tokens ({padded:.1f} padded); counting FLOPs and "
          "measuring peak matmul", flush=True)
    return {"teacher_dir": teacher_dir, "student_dir": str(student_dir), "teacher_layers": layers,
            "teacher_dev_accuracy": teacher_acc, "train_examples": len(train), "steps_per_epoch": len(loader),
            "mean_tokens": mean_len, "mean_padded_tokens": padded,
            "mean_padded_tokens_grouped": padded_grouped, "hidden_pairs": hidden, "attention_pairs": attention,
            "flops": model_flops(teacher_dir, str(student_dir), round(mean_len), args.batch_size),
            "peak": peak_matmul()}


def machine() -> dict:
    import textbrewer
    import transformers

    cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                if x.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "textbrewer": textbrewer.__version__}


def summarise(data: dict) -> str:
    s, setup, m, fl = data["settings"], data["setup"], data["machine"], data["setup"]["flops"]
    peak = setup["peak"]["float32"]["flops_per_s"]
    fmt = lambda v, f="{:.1f}": "–" if v is None else f.format(v)  # noqa: E731
    pairs = lambda ps: ", ".join(f"{a}↔{b}" for a, b in ps)  # noqa: E731
    full = {r["system"]: r for r in data["full"]}
    ok = {x: [t for t in data["trials"] if t["system"] == x and t.get("examples_per_s")] for x in s["systems"]}
    med = {x: statistics.median(t["examples_per_s"] for t in ok[x]) if ok[x] else None for x in s["systems"]}
    base, acc_tb, n_dev = med.get("textbrewer"), full.get("textbrewer", {}).get("accuracy"), s["dev_examples"]
    sigma = 100 * math.sqrt(acc_tb / 100 * (1 - acc_tb / 100) / n_dev) if acc_tb is not None else None
    ratio = lambda x: med[x] / base if med.get(x) and base else None  # noqa: E731
    rows = []
    for x in s["systems"]:
        f, rates = full.get(x, {}), [t["examples_per_s"] for t in ok[x]]
        flops = fl["student_fwd_bwd"] + (0 if x == "alembert-cached" else fl["teacher_fwd"])
        rows.append(f"| {SYSTEMS[x]} | " + (f"{med[x]:.1f} [{min(rates):.1f}–{max(rates):.1f}]" if rates else "failed")
                    + f" | {fmt(ratio(x), '{:.2f}×')} | {fmt(f.get('accuracy'))} | {fmt(f.get('examples_per_s'))} | "
                    f"{fmt(max((t['peak_rss_mib'] for t in ok[x]), default=None), '{:.0f}')} / "
                    f"{fmt(f.get('peak_rss_mib'), '{:.0f}')} | {flops / 1e9:.3f} | "
                    f"{fmt(100 * med[x] * flops / peak if med[x] else None, '{:.2f}%')} |")
    checks = [f"- {SYSTEMS[x]} ≥ {target}× TextBrewer: " + ("not measured" if ratio(x) is None else
              f"{ratio(x):.2f}× — {'met' if ratio(x) >= target else 'NOT met'}")
              for x, target in (("alembert-cached", 2.0), ("alembert-live", 1.2)) if x in s["systems"]]
    accs = [full[x]["accuracy"] for x in s["systems"] if full.get(x, {}).get("accuracy") is not None]
    if sigma is not None and len(accs) == len(s["systems"]):
        gap = max(abs(a - acc_tb) for a in accs)
        checks.append(f"- dev accuracies within noise (each within 2σ = {2 * sigma:.1f} points of TextBrewer's "
                      f"{acc_tb:.1f}): largest gap {gap:.1f} — {'met' if gap <= 2 * sigma else 'NOT met'}")
    else:
        checks.append("- dev accuracies within noise: not measured (a full run failed)")
    built = full.get("alembert-cached", {}) if (full.get("alembert-cached", {}).get("teacher_cache") or {}).get(
        "enabled") else (data.get("warm") or {})
    info = built.get("teacher_cache") or {}
    on = [t for t in ok.get("alembert-cached", []) if (t.get("teacher_cache") or {}).get("enabled")]
    recipe = next((r["recipe"] for r in data["full"] + data["trials"] if r.get("recipe")), {})
    saves = [t["checkpoint_save_seconds"] for t in ok.get("textbrewer", [])]
    runs = data["trials"] + data["full"] + ([data["warm"]] if data.get("warm") else [])
    problems = sorted({f"- {r['system']} ({r['mode']}): {n}" for r in runs for n in r.get("notes", [])})
    problems += [f"- {r['system']} ({r['mode']}): {r['error']}" for r in runs if "error" in r]
    problems += [f"- (d) read the cache in only {len(on)} of {len(ok['alembert-cached'])} timed trials"
                 ] if "alembert-cached" in ok and len(on) < len(ok["alembert-cached"]) else []
    lines = [
        "# Training throughput: TextBrewer, a plain PyTorch loop and alembert (TinyBERT-style distillation)", "",
        "```", f".venv/bin/python benchmarks/training_throughput.py {s['command']}".rstrip(), "```", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads ({m['cpu_capability']}); torch "
        f"{m['torch']}, transformers {m['transformers']}, textbrewer {m['textbrewer']}. Best large matmul: " + ", ".join(
            f"{k} {v['flops_per_s'] / 1e9:.0f} GFLOP/s (n={v.get('n')})" for k, v in setup["peak"].items()) + ".", "",
        f"Setup: teacher all-MiniLM-L6-v2 fine-tuned on SST-2 (6 layers, dev accuracy "
        f"{fmt(setup['teacher_dev_accuracy'])}); student its embeddings, layers "
        f"{[i + 1 for i in setup['teacher_layers']]} and head, one saved init loaded by every run. Data: seeded SST-2 "
        f"train slice of {setup['train_examples']} (seed {s['seed']}, max length {s['max_length']}, mean "
        f"{setup['mean_tokens']:.1f} tokens), dev {n_dev}. Batch {s['batch_size']}; AdamW lr {s['lr']} (weight decay "
        f"0.01, none on biases/LayerNorm), linear warm-up {s['warmup']:.0%} then decay, clip 1.0, fp32. Losses: hidden "
        f"MSE on student↔teacher states {pairs(s['hidden_pairs'])} (0 = embeddings), attention MSE on layers "
        f"{pairs(s['attention_pairs'])}, soft cross-entropy on the logits at T = 1, all weights 1.", "",
        f"Throughput: {s['rounds']} round(s) × {s['steps']} steps per system, round-robin, each trial a fresh process; "
        f"examples/s = examples trained / seconds in training steps. Quality: one {s['epochs']}-epoch run per system, "
        "the final model scored on dev (no best-checkpoint selection).", "",
        "| system | examples/s, median [min–max] | × TextBrewer | dev accuracy | full-run examples/s | "
        "peak RSS MiB (trials / full run) | model GFLOP / example | MFU (fp32) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
        f"Teacher cache of (d): {fmt(info['bytes'] / 2 ** 20 if info.get('bytes') else None)} MiB on disk, built in "
        f"{fmt(info.get('build_seconds'))} s ({'full run' if built is full.get('alembert-cached') else 'warm-up run'}),"
        f" outside every timer; read in {len(on)} of {len(ok.get('alembert-cached', []))} timed trials.", "",
        "Targets:", *checks, "",
        f"Noise: σ = √(p(1−p)/n), the binomial standard deviation of an accuracy p on n = {n_dev} dev sentences: "
        f"{fmt(sigma)} points at TextBrewer's accuracy (1.2 at 85 %, 1.4 at 78 % on 872). One seed: gaps under 2σ do "
        "not show that one system trains a better student.", "",
        "What is counted:",
        f"- Model FLOPs per example (torch FlopCounterMode, eager attention, a batch at the slice's mean length "
        f"{fl['length']}): student forward + backward {fl['student_fwd_bwd'] / 1e9:.3f} GFLOP, teacher forward "
        f"{fl['teacher_fwd'] / 1e9:.3f} GFLOP. (a)–(c) are charged both, (d) the student only (its teacher ran once, "
        "at the cache build). Not counted: loss terms, optimizer, alembert's score rebuild, padding. MFU = median "
        "examples/s × FLOPs per example / best fp32 matmul FLOP/s.",
        "- Timers: (a) train() until it returns, minus its checkpoint save (median "
        f"{fmt(statistics.median(saves) if saves else None, '{:.2f}')} s); (b) the loop; (c), (d) the engine's "
        "report['training']['train_seconds'] (training steps only: no evaluation, no cache build). Model loading "
        "and tokenization are outside every timer.", "",
        "How the systems differ:",
        "- Attention: (a) and (b) need eager attention (under SDPA, HF returns an empty tuple of attentions) and match"
        " post-softmax probabilities; alembert rebuilds pre-softmax scores from hooked Q and K (TinyBERT's attention "
        "MSE, masked entries zeroed) and runs both models in their default SDPA attention. Same comparisons, "
        "different numbers.",
        "- Masks: every system's token losses average over real tokens only (pairs of them for attention), "
        "alembert's rule: the plain loop computes it so, TextBrewer is given the 'inputs_mask' (its attention MSE "
        "then divides by Σ length² over the whole batch rather than per example).",
        f"- Batches: (a) and (b) draw shuffled batches from alembert's seeded loader; alembert ran with "
        f"group_by_length {recipe.get('group_by_length')} and compile {recipe.get('compile')}. Tokens computed per "
        f"example after padding: {setup['mean_padded_tokens']:.1f} shuffled, "
        f"{fmt(setup.get('mean_padded_tokens_grouped'))} length-grouped.",
        "- TextBrewer saves the student's state_dict when train() ends (here into a temporary folder); its "
        "GeneralDistiller cannot cache teacher outputs (it forces is_caching_logits off; BasicDistiller's cache "
        "holds logits only, with every batch, in memory).",
        "- Peak RSS is the worker process's VmHWM (its own address space: loading, data, training and, for alembert,"
        " scoring and report writing after training). getrusage's ru_maxrss is also in the .json, but Linux carries "
        "it across exec, so there it includes the parent's peak.",
    ]
    if problems:
        lines += ["", "Problems reported by the runs:", *problems]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per timed trial")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the full (quality) run")
    p.add_argument("--train-limit", type=int, default=2000)
    p.add_argument("--dev-limit", type=int, default=None, help="dev examples for accuracy (default: all 872)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ", ".join(SYSTEMS))
    p.add_argument("--group-by-length", choices=("true", "false"), default=None,
                   help="set alembert's recipe key (default: the recipe's own default)")
    p.add_argument("--teacher", default=None, help="a fine-tuned SST-2 teacher checkpoint (default: fine-tune one)")
    p.add_argument("--teacher-train-limit", type=int, default=None, help="default 8000 (500 with --quick)")
    p.add_argument("--work-dir", default=None, help="teacher, student init, alembert runs and caches "
                   "(default benchmarks/runs/throughput)")
    p.add_argument("--results-dir", default=None, help="where the .json and .md go (default benchmarks/results)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quick", action="store_true", help="smoke test: 1 round, 3 steps, 1 epoch, 64 train/dev "
                   "examples, a 500-example teacher; work and results under the temp folder unless given")
    p.add_argument("--summarise-only", action="store_true", help="rebuild the .md from the .json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, args.mode, args.settings)
    if args.quick:
        args.rounds, args.steps, args.epochs, args.train_limit, args.dev_limit = 1, 3, 1, 64, 64
        args.teacher_train_limit = args.teacher_train_limit or 500
        quick_dir = Path(tempfile.gettempdir()) / "alembert-throughput-quick"
        args.work_dir = args.work_dir or str(quick_dir)
        args.results_dir = args.results_dir or str(Path(args.work_dir) / "results")
    work = Path(args.work_dir or ROOT / "benchmarks" / "runs" / "throughput").resolve()
    results = Path(args.results_dir or ROOT / "benchmarks" / "results")
    args.teacher_train_limit = args.teacher_train_limit or 8000
    args.teacher = str(Path(args.teacher).resolve()) if args.teacher else None
    if args.summarise_only:
        data = json.loads((results / "training_throughput.json").read_text())
        (results / "training_throughput.md").write_text(summarise(data))
        print(summarise(data))
        return
    systems = [x for x in args.systems.split(",") if x]
    unknown = [x for x in systems if x not in SYSTEMS]
    if unknown:
        p.error(f"--systems: unknown {', '.join(unknown)} (expected {', '.join(SYSTEMS)})")
    start = time.time()
    work.mkdir(parents=True, exist_ok=True)
    setup = prepare(args, work)
    n_dev = len(get_task("sst2", args.data_dir).load("dev", args.dev_limit, args.seed))
    settings = {"systems": systems, "rounds": args.rounds, "steps": args.steps, "epochs": args.epochs,
                "train_limit": args.train_limit, "dev_limit": args.dev_limit, "dev_examples": n_dev,
                "batch_size": args.batch_size, "max_length": args.max_length, "lr": args.lr,
                "warmup": 0.1, "seed": args.seed, "data_dir": args.data_dir, "work_dir": str(work),
                "group_by_length": None if args.group_by_length is None else args.group_by_length == "true",
                "teacher_dir": setup["teacher_dir"], "student_dir": setup["student_dir"],
                "steps_per_epoch": setup["steps_per_epoch"], "hidden_pairs": setup["hidden_pairs"],
                "attention_pairs": setup["attention_pairs"],
                "command": " ".join(sys.argv[1:])}
    settings_path = work / "settings.json"
    settings_path.write_text(json.dumps(settings, indent=2))
    shutil.rmtree(work / "cache", ignore_errors=True)  # so the full run of (d) builds its cache, measured
    full, trials, warm = [], [], None
    for system in systems:  # quality first: (d)'s full run builds the cache its timed trials then read
        full.append(report(run_worker(system, "full", settings_path), start, "full run"))
    cached = next((r for r in full if r["system"] == "alembert-cached"), None)
    if cached and not (cached.get("teacher_cache") or {}).get("enabled"):
        print("the full run of (d) built no cache (one epoch?): building it with a warm-up run", flush=True)
        warm = report(run_worker("alembert-cached", "warm", settings_path), start, "cache warm-up")
    for r in range(args.rounds):  # round-robin, so machine noise hits every system alike
        for system in systems:
            res = run_worker(system, "steps", settings_path)
            trials.append(report(dict(res, round=r), start, f"round {r + 1}/{args.rounds}"))
    data = {"settings": settings, "machine": machine(), "setup": setup, "trials": trials, "full": full, "warm": warm,
            "wall_seconds": round(time.time() - start)}
    results.mkdir(parents=True, exist_ok=True)
    (results / "training_throughput.json").write_text(json.dumps(data, indent=2) + "\n")
    table = summarise(data)
    (results / "training_throughput.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
