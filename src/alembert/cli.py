"""alembert's command line: finetune, distill, eval, demo. Bad input: one line on stderr, exit code 2."""
from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alembert", description="Distil fine-tuned encoders into small, fast students.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    # --debug is accepted after the command too; SUPPRESS keeps a subcommand from resetting the top-level flag
    common = argparse.ArgumentParser(add_help=False)
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
    ft.add_argument("--epochs", type=float, default=3.0)
    ft.add_argument("--lr", type=float, default=5e-5)
    ft.add_argument("--batch-size", type=int, default=32)
    ft.add_argument("--max-length", type=int, default=128)
    ft.add_argument("--train-limit", type=int, help="train on a seeded subset of this many examples")
    ft.add_argument("--seed", type=int, default=42)
    ft.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ft.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")
    ft.add_argument("--overwrite", action="store_true", help="replace an existing run directory")

    ds = sub.add_parser("distill", parents=[common],
                        help="run a distillation recipe (YAML)")
    ds.add_argument("recipe", help="recipe file, e.g. recipes/tinybert.yaml")
    ds.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe key by its dotted path, e.g. --set stages.0.lr=3e-5 (repeatable)")
    ds.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")
    ds.add_argument("--overwrite", action="store_true", help="replace an existing run directory")

    ev = sub.add_parser("eval", parents=[common],
                        help="score a checkpoint on a task's split")
    ev.add_argument("model", help="checkpoint directory or hub id")
    ev.add_argument("--task", required=True, help="task name or a task YAML for your files")
    ev.add_argument("--split", default="dev")
    ev.add_argument("--max-length", type=int, default=128)
    ev.add_argument("--limit", type=int, help="score a seeded subset of this many examples")
    ev.add_argument("--speed", action="store_true", help="also measure parameters and latency")
    ev.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")

    dm = sub.add_parser("demo", parents=[common],
                        help="teacher on SST-2, TinyBERT-style 2-layer student, no-teacher baseline, table")
    dm.add_argument("--data-dir", help="data folder (default: $ALEMBERT_DATA, else ../shared/data)")
    dm.add_argument("--output-dir", default="outputs/demo")
    dm.add_argument("--train-limit", type=int, default=4000, help="SST-2 train subset size (default 4000)")
    dm.add_argument("--overwrite", action="store_true")
    return parser


def _run(args) -> int:
    from alembert import api

    data_dir = args.data_dir  # None: the task resolves $ALEMBERT_DATA, then ../shared/data
    if args.command == "finetune":
        run = api.finetune(args.model, args.task, name=args.name, output_dir=args.output_dir, epochs=args.epochs,
                           lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                           train_limit=args.train_limit, seed=args.seed, data_dir=data_dir,
                           precision=args.precision, overwrite=args.overwrite)
        _print_run(run)
    elif args.command == "distill":
        overrides = list(args.overrides) + ([f"data_dir={data_dir}"] if args.data_dir else [])
        run = api.distill(args.recipe, overrides, overwrite=args.overwrite)
        _print_run(run)
    elif args.command == "eval":
        print(json.dumps(api.evaluate(args.model, args.task, args.split, data_dir, args.max_length, args.limit,
                                      speed=args.speed), indent=2))
    elif args.command == "demo":
        from alembert.demo import run_demo

        run_demo(data_dir, args.output_dir, args.train_limit, args.overwrite)
    return 0


def _print_run(run) -> None:
    from alembert.evaluation.report import comparison_table

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
        print(f"alembert: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("alembert: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
