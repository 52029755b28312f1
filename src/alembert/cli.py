"""alembert's command line: finetune, distill, pool, transfer, search, eval, demo, export, bench, pareto.
Bad input: one line on stderr, exit code 2."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line, like alembert's own (its usage block would make them several)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.HelpFormatter):
    """Every option's default in its help, unless the text already says it or there is none to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text or not action.option_strings or default in (None, False, [], argparse.SUPPRESS) \
                or isinstance(action, argparse._VersionAction):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _number(kind, low, high=None, low_open=False):
    """An argparse type: a finite number of `kind` within [low, high] (low excluded with `low_open`), said in
    words; nan and inf are refused like any other value out of range."""
    if kind is int:
        expected = f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}"
    elif (low, high) == (0, 1) and not low_open:
        expected = "a fraction between 0 and 1"
    else:
        expected = f"a finite number {'above' if low_open else 'of at least'} {low:g}" \
            + (f" and at most {high:g}" if high is not None else "")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) \
                or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


_FRACTION, _COUNT = _number(float, 0, 1), _number(int, 1)
_EPOCHS, _LR = _number(float, 0, 10_000, low_open=True), _number(float, 0, 1, low_open=True)
_SEED = _number(int, 0, 2**32 - 1)  # NumPy's seeds are 32-bit; a negative one fails deep inside set_seed
_BATCH = _number(int, 1, 1 << 20)
_MAX_LENGTH = _number(int, 8, 4096)  # the recipe's range for max_length


DEFAULT_MAX_LENGTH = 128
_MAX_LENGTH_HELP = (f"tokens per example, longer ones cut; at most the model's position embeddings take (default: "
                    f"{DEFAULT_MAX_LENGTH}, or the model's limit when smaller)")
_TRUST = "let the model checkpoints run their own Python code (only for sources you trust)"
_DEBUG = "on an error, show the full traceback before the one-line message (the exit code stays 2)"
_DATA_DIR = "data folder (default: $ALEMBERT_DATA, else ../shared/data)"


def _parser() -> argparse.ArgumentParser:
    from alembert import __version__

    parser = _Parser(prog="alembert", description="Distil fine-tuned encoders into small, fast students.",
                     formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"alembert {__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG)
    # --debug is accepted after the command too; SUPPRESS keeps a subcommand from resetting the top-level flag
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help=_DEBUG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, text):
        return sub.add_parser(name, parents=[common], help=text, description=text, formatter_class=_Help)

    ft = command("finetune", "fine-tune a model on a task (makes a teacher, or a no-teacher baseline)")
    ft.add_argument("--model", required=True, help="checkpoint directory or hub id")
    ft.add_argument("--task", required=True,
                    help="task name (sst2, mrpc, cola, rte, stsb, amazon-books, conll2003, squad-dev-split, ...) or a "
                         "task YAML for your files")
    ft.add_argument("--name", help="run name (default: finetune-<model>-<task>)")
    ft.add_argument("--output-dir", default="outputs", help="parent of the run directory")
    ft.add_argument("--epochs", type=_EPOCHS, default=3.0, help="passes over the training set (may be fractional)")
    ft.add_argument("--lr", type=_LR, default=5e-5, help="peak learning rate (AdamW, linear warm-up and decay)")
    ft.add_argument("--batch-size", type=_BATCH, default=32, help="training examples per optimizer step")
    ft.add_argument("--max-length", type=_MAX_LENGTH, help=_MAX_LENGTH_HELP)
    ft.add_argument("--train-limit", type=_COUNT, help="train on a seeded subset of this many examples")
    ft.add_argument("--seed", type=_SEED, default=42, help="seed of initialisation, dropout and data order")
    ft.add_argument("--data-seed", type=_SEED, help="seed of the train subset and stress transforms (default: --seed)")
    ft.add_argument("--downsample", type=_COUNT, help="stress: keep this many training examples")
    ft.add_argument("--flip-labels", type=_FRACTION, help="stress: give this fraction of examples a wrong label")
    ft.add_argument("--imbalance", type=_number(float, 1, 1e6), help="stress: largest / smallest class count")
    ft.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="training precision")
    ft.add_argument("--data-dir", help=_DATA_DIR)
    ft.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    ft.add_argument("--trust-remote-code", action="store_true", help=_TRUST)

    ds = command("distill", "run a distillation recipe (YAML)")
    ds.add_argument("recipe", help="recipe file, e.g. recipes/tinybert.yaml")
    _file_options(ds, "a recipe key", "stages.0.lr=3e-5", "replace an existing run directory")
    ds.add_argument("--trust-remote-code", action="store_true", help=_TRUST)
    ds.add_argument("--resume", action="store_true",
                    help="continue an interrupted run from its newest good checkpoint (start afresh if there is none)")

    pl = command("pool", "fine-tune a pool of teachers of distinct quality from one base (YAML)")
    pl.add_argument("pool", help="pool file, e.g. recipes/teacher_pool.yaml")
    _file_options(pl, "a pool key", "teachers.0.epochs=1", "retrain every teacher (default: reuse teachers whose "
                  "run finished)")

    tr = command("transfer", "distil a student (or take one), then fine-tune it on several tasks; one table (YAML)")
    tr.add_argument("transfer", help="transfer file (distill: RECIPE or student: CHECKPOINT, tasks: [...])")
    _file_options(tr, "a transfer key", "finetune.epochs=2", "run every step again (default: reuse finished runs)")

    se = command("search", "train variants, layer maps (genetic) or student sizes (latency budget) of a recipe as "
                           "light proxy runs; one table (YAML)")
    se.add_argument("search", help="search file (recipe: RECIPE, and variants: {name: [KEY=VALUE, ...]}, layer_maps: "
                                   "{...} or sizes: {...})")
    se.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a search key by its dotted path, e.g. --set output_dir=runs (repeatable)")

    ev = command("eval", "score a checkpoint on a task's split (JSON on stdout)")
    ev.add_argument("model", help="checkpoint directory or hub id")
    ev.add_argument("--task", required=True, help="task name or a task YAML for your files")
    ev.add_argument("--split", default="dev", metavar="{train,dev,test}",
                    help="the split to score: train, dev or test (MNLI also dev_matched, dev_mismatched); it must "
                         "have labels, which test files usually lack")
    ev.add_argument("--max-length", type=_MAX_LENGTH, help=_MAX_LENGTH_HELP)
    ev.add_argument("--limit", type=_COUNT, help="score a seeded subset of this many examples")
    ev.add_argument("--speed", action="store_true", help="also measure parameters and latency")
    ev.add_argument("--data-dir", help=_DATA_DIR)
    ev.add_argument("--trust-remote-code", action="store_true", help=_TRUST)

    dm = command("demo", "teacher on SST-2, TinyBERT-style 2-layer student, no-teacher baseline, table")
    dm.add_argument("--data-dir", help="data folder holding glue/SST-2 (default: $ALEMBERT_DATA, else ../shared/data)")
    dm.add_argument("--output-dir", default="outputs/demo", help="folder of the three runs and the table")
    dm.add_argument("--train-limit", type=_COUNT, default=4000, help="SST-2 train subset size")
    dm.add_argument("--overwrite", action="store_true", help="replace the runs of an earlier demo")
    _inference_parsers(command)
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


def _inference_parsers(command) -> None:
    """export, bench, pareto: serving a checkpoint and measuring it (heavy imports wait until they run)."""
    ex = command("export", "export a checkpoint to ONNX (optionally int8), checked against PyTorch")
    ex.add_argument("model", help="saved checkpoint directory (a sequence or token classifier, or a QA model)")
    ex.add_argument("--onnx", action="store_true", required=True, help="export to ONNX (the one format today)")
    ex.add_argument("--int8", action="store_true", help="also write model.int8.onnx (dynamic int8 quantization)")
    ex.add_argument("--output", help="output directory (default: MODEL/onnx); a folder holding another model's files "
                                     "is refused")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace the model files already in --output (default: only an earlier export of MODEL)")
    ex.add_argument("--max-length", type=_number(int, 4, 4096),
                    help="longest check/task input in tokens (default: 128, or the model's limit when smaller)")
    ex.add_argument("--opset", type=_number(int, 18, 99), help="ONNX opset (default: 18)")
    ex.add_argument("--task", help="also score PyTorch, ONNX fp32 and int8 on this task's dev split")
    ex.add_argument("--limit", type=_COUNT, help="score a seeded subset of this many dev examples")
    ex.add_argument("--data-dir", help=_DATA_DIR)

    bn = command("bench", "latency/throughput of models on torch and ONNX Runtime backends (markdown, JSON)")
    bn.add_argument("models", nargs="+", metavar="MODEL",
                    help="saved checkpoint directories (sequence or token classifiers, QA models)")
    bn.add_argument("--seq-lens", type=_number(int, 1, 4096), nargs="+", default=[64, 128],
                    help="sequence lengths to time, in tokens (at most each model's position embeddings)")
    bn.add_argument("--batch-sizes", type=_BATCH, nargs="+", default=[1, 32], help="batch sizes to time")
    bn.add_argument("--backends", nargs="+", metavar="BACKEND",
                    help="any of torch-fp32 torch-bf16 onnx-fp32 onnx-int8 (default: all four)")
    bn.add_argument("--threads", type=_number(int, 1, 1024),
                    help="torch and ONNX Runtime threads (default: torch's current count)")
    bn.add_argument("--warmup", type=_number(int, 0, 100_000),
                    help="warm-up runs (default: 5 at batch 1, 2 at larger batches)")
    bn.add_argument("--repeats", type=_number(int, 1, 100_000),
                    help="timed runs (default: 30 at batch 1, 10 at larger batches)")
    bn.add_argument("--interleaved", action="store_true",
                    help="time every model and backend in the same rounds and give each one's speed-up over the "
                         "first, with its spread (holds every model in memory at once)")
    bn.add_argument("--output", help="write the full result as JSON here")
    bn.add_argument("--task", help="also score each model and backend on this task's dev split")
    bn.add_argument("--limit", type=_COUNT, help="score a seeded subset of this many dev examples")
    bn.add_argument("--data-dir", help=_DATA_DIR)

    pa = command("pareto", "plot latency against dev metric from run directories or bench JSON files")
    pa.add_argument("inputs", nargs="+", metavar="RUN_OR_BENCH",
                    help="run directories (report.json) or JSON files from alembert bench --task --output")
    pa.add_argument("--output", required=True, help="PNG file to write")
    pa.add_argument("--batch-size", type=_BATCH, default=1,
                    help="latency at this batch size (run reports hold 1 and 32)")


def _check_lengths(models, lengths, option: str) -> None:
    """Each model's position embeddings take the longest of `lengths`, checked from its config before any work."""
    from alembert.models.loading import check_max_length, load_config

    for model in models:  # a folder that is no checkpoint is bench's to name, as it does
        if os.path.isfile(os.path.join(model, "config.json")):
            check_max_length(load_config(model), max(lengths), option)


def _max_length(model: str, given: int | None, trust_remote_code: bool) -> int:
    """--max-length: the given value once the model's position embeddings take it (one line otherwise), else the
    default, cut to the model's limit (a small model's 64 positions)."""
    from alembert.models.loading import check_max_length, load_config, position_limit

    config = load_config(model, trust_remote_code)
    if given is None:
        return min(DEFAULT_MAX_LENGTH, position_limit(config) or DEFAULT_MAX_LENGTH)
    check_max_length(config, given, "--max-length")
    return given


def _run_inference(args) -> None:
    if args.command == "export":
        from alembert.export import DEFAULT_OPSET, export_onnx

        print(json.dumps(export_onnx(args.model, args.output, int8=args.int8, opset=args.opset or DEFAULT_OPSET,
                                     max_length=args.max_length, task=args.task, data_dir=args.data_dir,
                                     limit=args.limit, overwrite=args.overwrite), indent=2))
    elif args.command == "bench":
        from alembert.evaluation.bench import BACKENDS, bench, markdown_table

        output = _writable_file(args.output) if args.output else None  # fail before a long run, not after
        _check_lengths(args.models, args.seq_lens, "--seq-lens")
        result = bench(args.models, args.seq_lens, args.batch_sizes, args.backends or BACKENDS, threads=args.threads,
                       warmup=args.warmup, repeats=args.repeats, task=args.task, data_dir=args.data_dir,
                       limit=args.limit, log=lambda message: print(message, file=sys.stderr, flush=True),
                       interleaved=args.interleaved)
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

    # None: the task resolves $ALEMBERT_DATA, then ../shared/data (search has no --data-dir: its recipe says)
    data_dir = getattr(args, "data_dir", None)
    if args.command == "finetune":
        args.max_length = _max_length(args.model, args.max_length, args.trust_remote_code)
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
    elif args.command in ("transfer", "search"):
        _run_flow(args)
    elif args.command == "eval":  # the default length follows the task (api.evaluate): only a given one is checked
        if args.max_length is not None:
            _max_length(args.model, args.max_length, args.trust_remote_code)
        print(json.dumps(api.evaluate(args.model, args.task, args.split, data_dir, args.max_length, args.limit,
                                      speed=args.speed, trust_remote_code=args.trust_remote_code), indent=2))
    elif args.command == "demo":
        from alembert.demo import run_demo

        run_demo(data_dir, args.output_dir, args.train_limit, args.overwrite)
    return 0


def _run_flow(args) -> None:
    """transfer and search: their table on stdout, progress on stderr."""
    from alembert import api

    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if args.command == "transfer":
        overrides = list(args.overrides) + ([f"data_dir={args.data_dir}"] if args.data_dir else [])
        from alembert.pipelines.transfer import table

        result = api.transfer(args.transfer, overrides, overwrite=args.overwrite, log=log)
        print(table(result["rows"]), end="")
    else:
        from alembert.pipelines.search import table

        result = api.search(args.search, args.overrides, log=log)
        print(result["table"] if "table" in result else table(result["results"]), end="")


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
        if args.debug:  # the traceback, then the same line and the same exit code as without --debug
            traceback.print_exc()
        print(f"alembert: error: {' '.join(str(err).splitlines())}", file=sys.stderr)  # one line, whatever it holds
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("alembert: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
