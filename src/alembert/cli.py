"""alembert's command line: finetune, distill, pool, eval, demo, export, bench, pareto.
Bad input: one line on stderr, exit code 2."""
from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line, like alembert's own (its usage block would make them several)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, low, high=None, low_open=False):
    """An argparse type: a number of `kind` within [low, high] (low excluded with `low_open`), said in words."""
    if kind is int:
        expected = f"an integer of at least {low}"
    elif high is not None:
        expected = f"a fraction between {low} and {high}"
    else:
        expected = f"a number {'above' if low_open else 'of at least'} {low}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (low_open and value == low) or (high is not None and value > high) or value != value:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


_FRACTION, _POSITIVE, _COUNT = _number(float, 0, 1), _number(float, 0, low_open=True), _number(int, 1)


_TRUST = "let the model checkpoints run their own Python code (only for sources you trust)"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="alembert", description="Distil fine-tuned encoders into small, fast students.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    # --debug is accepted after the command too; SUPPRESS keeps a subcommand from resetting the top-level flag
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ft = sub.add_parser("finetune", parents=[common],
                        help="fine-tune a model on a task (makes a teacher, or a no-teacher baseline)")
    ft.add_argument("--model", required=True, help="checkpoint directory or hub id")
    ft.add_argument("--task", required=True,
                    help="task name (sst2, mrpc, cola, rte, stsb, amazon-books, ...) or a task YAML for your files")
    ft.add_argument("--name", help="run name (default: finetune-<model>-<task>)")
    ft.add_argument("--output-dir", default="outputs", help="parent of the run directory (default: outputs)")
    ft.add_argument("--epochs", type=_POSITIVE, default=3.0)
    ft.add_argument("--lr", type=_POSITIVE, default=5e-5)
    ft.add_argument("--batch-size", type=_COUNT, default=32)
    ft.add_argument("--max-length", type=int, default=128)
    ft.add_argument("--train-limit", type=_COUNT, help="train on a seeded subset of this many examples")
    ft.add_argument("--seed", type=int, default=42)
    ft.add_argument("--data-seed", type=int, help="seed of the train subset and stress transforms (default: --seed)")
    ft.add_argument("--downsample", type=_COUNT, help="stress: keep this many training examples")
    ft.add_argument("--flip-labels", type=_FRACTION, help="stress: give this fraction of examples a wrong label")
    ft.add_argument("--imbalance", type=_number(float, 1), help="stress: largest / smallest class count")
    ft.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ft.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")
    ft.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    ft.add_argument("--trust-remote-code", action="store_true", help=_TRUST)

    ds = sub.add_parser("distill", parents=[common],
                        help="run a distillation recipe (YAML)")
    ds.add_argument("recipe", help="recipe file, e.g. recipes/tinybert.yaml")
    _file_options(ds, "a recipe key", "stages.0.lr=3e-5", "replace an existing run directory")
    ds.add_argument("--trust-remote-code", action="store_true", help=_TRUST)
    ds.add_argument("--resume", action="store_true",
                    help="continue an interrupted run from its newest good checkpoint (start afresh if there is none)")

    pl = sub.add_parser("pool", parents=[common],
                        help="fine-tune a pool of teachers of distinct quality from one base (YAML)")
    pl.add_argument("pool", help="pool file, e.g. recipes/teacher_pool.yaml")
    _file_options(pl, "a pool key", "teachers.0.epochs=1", "retrain every teacher (default: reuse teachers whose "
                  "run finished)")

    ev = sub.add_parser("eval", parents=[common],
                        help="score a checkpoint on a task's split")
    ev.add_argument("model", help="checkpoint directory or hub id")
    ev.add_argument("--task", required=True, help="task name or a task YAML for your files")
    ev.add_argument("--split", default="dev")
    ev.add_argument("--max-length", type=int, default=128)
    ev.add_argument("--limit", type=int, help="score a seeded subset of this many examples")
    ev.add_argument("--speed", action="store_true", help="also measure parameters and latency")
    ev.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")
    ev.add_argument("--trust-remote-code", action="store_true", help=_TRUST)

    dm = sub.add_parser("demo", parents=[common],
                        help="teacher on SST-2, TinyBERT-style 2-layer student, no-teacher baseline, table")
    dm.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")
    dm.add_argument("--output-dir", default="outputs/demo")
    dm.add_argument("--train-limit", type=int, default=4000, help="SST-2 train subset size (default 4000)")
    dm.add_argument("--overwrite", action="store_true")
    _inference_parsers(sub, common)
    return parser


def _file_options(parser, what: str, example: str, overwrite: str) -> None:
    """--set, --data-dir and --overwrite of the commands that run a YAML file (a recipe, a pool)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override {what} by its dotted path, e.g. --set {example} (repeatable)")
    parser.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")
    parser.add_argument("--overwrite", action="store_true", help=overwrite)


def _stress(args) -> dict | None:
    """finetune's stress options as a recipe's stress mapping (None when none is given)."""
    given = {k: getattr(args, k) for k in ("downsample", "flip_labels", "imbalance") if getattr(args, k) is not None}
    return given or None


def _inference_parsers(sub, common) -> None:
    """export, bench, pareto: serving a checkpoint and measuring it (heavy imports wait until they run)."""
    ex = sub.add_parser("export", parents=[common],
                        help="export a classifier checkpoint to ONNX (optionally int8), checked against PyTorch")
    ex.add_argument("model", help="saved sequence-classification checkpoint directory")
    ex.add_argument("--onnx", action="store_true", required=True, help="export to ONNX (the one format today)")
    ex.add_argument("--int8", action="store_true", help="also write model.int8.onnx (dynamic int8 quantization)")
    ex.add_argument("--output", help="output directory (default: MODEL/onnx)")
    ex.add_argument("--max-length", type=int, default=128, help="longest check/task input in tokens (default 128)")
    ex.add_argument("--opset", type=int, help="ONNX opset (default 18)")
    ex.add_argument("--task", help="also score PyTorch, ONNX fp32 and int8 on this task's dev split")
    ex.add_argument("--limit", type=int, help="score a seeded subset of this many dev examples")
    ex.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")

    bn = sub.add_parser("bench", parents=[common],
                        help="latency/throughput of models on torch and ONNX Runtime backends (markdown, JSON)")
    bn.add_argument("models", nargs="+", metavar="MODEL", help="saved sequence-classification checkpoint directories")
    bn.add_argument("--seq-lens", type=int, nargs="+", default=[64, 128])
    bn.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    bn.add_argument("--backends", nargs="+", metavar="BACKEND",
                    help="any of torch-fp32 torch-bf16 onnx-fp32 onnx-int8 (default: all four)")
    bn.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: torch's current count)")
    bn.add_argument("--warmup", type=int, help="warm-up runs (default 5 at batch 1, 2 at larger batches)")
    bn.add_argument("--repeats", type=int, help="timed runs (default 30 at batch 1, 10 at larger batches)")
    bn.add_argument("--output", help="write the full result as JSON here")
    bn.add_argument("--task", help="also score each model and backend on this task's dev split")
    bn.add_argument("--limit", type=int, help="score a seeded subset of this many dev examples")
    bn.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")

    pa = sub.add_parser("pareto", parents=[common],
                        help="plot latency against dev metric from run directories or bench JSON files")
    pa.add_argument("inputs", nargs="+", metavar="RUN_OR_BENCH",
                    help="run directories (report.json) or JSON files from alembert bench --task --output")
    pa.add_argument("--output", required=True, help="PNG file to write")
    pa.add_argument("--batch-size", type=int, default=1, help="latency at this batch size (default 1)")


def _run_inference(args) -> None:
    if args.command == "export":
        from alembert.export import DEFAULT_OPSET, export_onnx

        print(json.dumps(export_onnx(args.model, args.output, int8=args.int8, opset=args.opset or DEFAULT_OPSET,
                                     max_length=args.max_length, task=args.task, data_dir=args.data_dir,
                                     limit=args.limit), indent=2))
    elif args.command == "bench":
        from alembert.evaluation.bench import BACKENDS, bench, markdown_table

        output = _writable_file(args.output) if args.output else None  # fail before a long run, not after
        result = bench(args.models, args.seq_lens, args.batch_sizes, args.backends or BACKENDS, threads=args.threads,
                       warmup=args.warmup, repeats=args.repeats, task=args.task, data_dir=args.data_dir,
                       limit=args.limit, log=lambda message: print(message, file=sys.stderr, flush=True))
        print(markdown_table(result))
        if output:
            output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            print(f"results: {output}")
    elif args.command == "pareto":
        from alembert.evaluation.pareto import collect_points, plot_pareto

        output = _writable_file(args.output)
        points, metric = collect_points(args.inputs, args.batch_size)
        front = plot_pareto(points, output, f"latency p50 at batch {args.batch_size} (ms)", f"dev {metric}")
        print("Pareto frontier (fastest first):")
        for p in front:
            print(f"  {p.label}: {p.latency_ms:.2f} ms, {metric} {p.metric:.2f}")
        print(f"plot: {output}")


def _writable_file(name: str):
    """The path, once it is known that a file can be written there (nothing is created but its folder)."""
    from pathlib import Path

    from alembert.errors import AlembertError
    from alembert.export import writable_dir

    path = Path(name)
    if path.is_dir():
        raise AlembertError(f"output {path}: is a directory (expected a file path)")
    writable_dir(path.parent, "a writable file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise AlembertError(f"output {path}: cannot write (Permission denied; expected a writable file path)")
    return path


def _run(args) -> int:
    if args.command in ("export", "bench", "pareto"):
        _run_inference(args)
        return 0
    from alembert import api

    data_dir = args.data_dir  # None: the task resolves $ALEMBERT_DATA, then ../shared/data
    if args.command == "finetune":
        run = api.finetune(args.model, args.task, name=args.name, output_dir=args.output_dir, epochs=args.epochs,
                           lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                           train_limit=args.train_limit, seed=args.seed, data_dir=data_dir,
                           precision=args.precision, overwrite=args.overwrite, data_seed=args.data_seed,
                           stress=_stress(args), trust_remote_code=args.trust_remote_code)
        _print_run(run)
    elif args.command == "distill":
        overrides = list(args.overrides) + ([f"data_dir={data_dir}"] if args.data_dir else []) \
            + (["trust_remote_code=true"] if args.trust_remote_code else [])
        run = api.distill(args.recipe, overrides, overwrite=args.overwrite, resume=args.resume,
                          log=lambda message: print(message, file=sys.stderr, flush=True))
        _print_run(run)
    elif args.command == "pool":
        _run_pool(args)
    elif args.command == "eval":
        print(json.dumps(api.evaluate(args.model, args.task, args.split, data_dir, args.max_length, args.limit,
                                      speed=args.speed, trust_remote_code=args.trust_remote_code), indent=2))
    elif args.command == "demo":
        from alembert.demo import run_demo

        run_demo(data_dir, args.output_dir, args.train_limit, args.overwrite)
    return 0


def _run_pool(args) -> None:
    from alembert.pipelines.pool import build_pool, teachers_block

    overrides = list(args.overrides) + ([f"data_dir={args.data_dir}"] if args.data_dir else [])
    pool = build_pool(args.pool, overrides, overwrite=args.overwrite,
                      log=lambda message: print(message, file=sys.stderr, flush=True))
    if pool is None:  # a distributed run's other processes: the main one prints
        return
    metric = pool["main_metric"]
    print(f"| teacher | layers | parameters | dev {metric} |\n|---|---:|---:|---:|")
    for t in pool["teachers"]:
        print(f"| {t['name']} | {t['layers']} | {t['parameters'] / 1e6:.1f}M | {t['dev_main_metric']:.2f} |")
    print(f"\nAdd to a distillation recipe:\n{teachers_block(pool)}")
    pool_dir = os.path.dirname(os.path.dirname(pool["teachers"][0]["path"]))  # <pool>/<teacher>/student
    print(f"\npool: {os.path.join(pool_dir, 'pool.json')}")


def _print_run(run) -> None:
    from alembert.evaluation.report import comparison_table

    if run is None:  # a distributed run's other processes: the main one prints
        return
    metric = run.report["task"]["main_metric"]
    if all("speed" in m for m in run.report["models"]):
        print(comparison_table(run.report["models"], metric))
    print(f"student: {run.student_dir}\nreport:  {run.path / 'report.md'}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # keep the terminal for our own progress bar and table
    hf_logging.set_verbosity_error()
    from alembert.errors import AlembertError

    try:
        return _run(args)
    except AlembertError as err:
        if args.debug:
            raise
        print(f"alembert: error: {' '.join(str(err).splitlines())}", file=sys.stderr)  # one line, whatever it holds
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("alembert: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
