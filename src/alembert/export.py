"""ONNX export of a saved model with a head alembert trains (a sequence or token classifier, an extractive QA model;
fp32, and int8 by dynamic quantization), checked against PyTorch (onnx_check.py). The ONNX outputs are named as
the head's: `logits`, or `start_logits` and `end_logits`.

The exported folder is self-contained: model.onnx (and model.int8.onnx), the config and the tokenizer, so it
serves with onnxruntime and a tokenizer alone, and export.json records what was written from which model. Export
writes everything into a temporary folder and renames the files into place only after the check has passed, so a
failed export leaves nothing behind.

A folder that holds another model's files is refused before any work: copying this model's config.json and
tokenizer over them would make that model load as this one (a 6-layer teacher read as a 2-layer model). An
earlier export of the same model (its export.json names this model) is replaced; `overwrite` replaces anything.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from alembert.errors import AlembertError
from alembert.models.heads import DESCRIPTIONS, OUTPUT_NAMES, SUFFIXES, kind_of_architectures, kind_of_model
from alembert.onnx_check import check_inputs, compare, make_session, onnx_logits  # noqa: F401 (also served here)

DEFAULT_OPSET = 18
FP32_TOLERANCE = 1e-4  # max abs logit difference allowed between ONNX fp32 and PyTorch
METRIC_TOLERANCE = 0.1  # task-metric points allowed between ONNX fp32 and PyTorch
MODEL_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
RECORD_FILE = "export.json"  # the summary of the export and the model it came from
DEFAULT_MAX_LENGTH = 128
# what a checkpoint folder holds besides its weights; copied so the ONNX folder is self-contained
_SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
               "vocab.json", "merges.txt", "spm.model", "sentencepiece.bpe.model", "added_tokens.json",
               "spiece.model", "tokenizer.model", "source.spm", "bpe.codes")  # every vocabulary loading.py accepts
# files that make a folder some model's: weights of any format besides the files an export writes
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ckpt")


class HeadOutputs(torch.nn.Module):
    """The model with a fixed input signature and plain tensors out (its head's outputs, by name), as the exporter
    needs."""

    def __init__(self, model, with_token_types: bool):
        super().__init__()
        self.model = model
        self.with_token_types = with_token_types
        self.names = OUTPUT_NAMES[kind_of_model(model)]

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {"token_type_ids": token_type_ids} if self.with_token_types else {}
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return tuple(getattr(output, name) for name in self.names) if len(self.names) > 1 else \
            getattr(output, self.names[0])


def input_names(model) -> list[str]:
    from alembert.models.layout import takes_token_types

    return ["input_ids", "attention_mask"] + (["token_type_ids"] if takes_token_types(model) else [])


def check_checkpoint_dir(model_dir: str | os.PathLike) -> Path:
    """The directory, once its config.json names the architecture of a head alembert trains; else one line."""
    path = Path(model_dir)
    expected = "expected a saved sequence-classification, token-classification or question-answering checkpoint " \
               "directory"
    if not path.is_dir():
        raise AlembertError(f"model {path}: no such directory ({expected})")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise AlembertError(f"model {path}: no config.json ({expected})")
    try:
        architectures = json.loads(config_file.read_text(encoding="utf-8")).get("architectures") or []
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        raise AlembertError(f"model {config_file}: not valid JSON ({err})") from err
    if kind_of_architectures(architectures) is None:
        raise AlembertError(f"model {path}: config.json architectures {architectures} has no "
                            f"{' or '.join('*' + s for s in SUFFIXES.values())} ({expected})")
    return path


def checkpoint_kind(model_dir: str | os.PathLike) -> str:
    """The kind of task (tasks/kinds.py) a checked checkpoint directory's head serves."""
    config = json.loads((check_checkpoint_dir(model_dir) / "config.json").read_text(encoding="utf-8"))
    return kind_of_architectures(config.get("architectures"))


def load_checkpoint(model_dir: str | os.PathLike, num_labels: int | None = None, task=None):
    """(model, tokenizer) from a saved checkpoint directory with a head alembert trains, or a one-line error; with
    `task`, the head must be of the task's kind."""
    from alembert.models.loading import load_classifier

    kind = checkpoint_kind(model_dir)
    if task is not None and task.kind != kind:
        raise AlembertError(f"model {model_dir}: a {DESCRIPTIONS[kind]} model, but task {task.name} is {task.kind} "
                            f"(expected a model with a {DESCRIPTIONS[task.kind]} head)")
    model, tokenizer = load_classifier(Path(model_dir), num_labels, kind=kind)
    return model.eval(), tokenizer


def export_fp32(model, names: list[str], path: Path, opset: int, attention: str = "eager") -> None:
    wrapper = HeadOutputs(model, "token_type_ids" in names).eval()
    # batch 2 and length 16, not 1: the exporter specialises axes whose example size is 0 or 1
    example = tuple(torch.full((2, 16), 5, dtype=torch.long) if n == "input_ids" else
                    torch.ones(2, 16, dtype=torch.long) if n == "attention_mask" else
                    torch.zeros(2, 16, dtype=torch.long) for n in names)
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter logs that torchvision ops are skipped; BERT has none
    # Eager attention exports to plain MatMul/Softmax that ONNX Runtime runs faster than the exported SDPA
    # graph (benchmarks/export_attention.py; figures in benchmarks/RESULTS.md).
    kernel = getattr(model.config, "_attn_implementation", None)
    if kernel and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attention)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The dynamo exporter (onnxscript) handles HF BERT on this torch; weights stay inside the file
            # (external_data=False) so model.onnx is one self-contained file (limit 2 GB).
            torch.onnx.export(wrapper, example, str(path), input_names=names, output_names=list(wrapper.names),
                              dynamic_shapes=dynamic, opset_version=opset, dynamo=True, external_data=False,
                              verbose=False)
    except Exception as err:  # the exporter raises many types; the user needs the model and the reason
        raise AlembertError(f"model {model.name_or_path}: ONNX export failed ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''})") from err
    finally:
        quiet.setLevel(level)
        if kernel and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(kernel)


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic int8 quantization of MatMul/Gemm weights (activations quantized on the fly at run time)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    work = int8_path.parent
    model = onnx.load(str(fp32_path))
    # The exporter records shapes of the weights in value_info; the quantizer turns Gemm(transB) into MatMul
    # with the transposed weight and then fails on the stale (out, in) shape. Shapes of weights are known
    # from the initializers anyway.
    weights = {t.name for t in model.graph.initializer}
    keep = [vi for vi in model.graph.value_info if vi.name not in weights]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    cleaned, prepared = work / "cleaned.onnx", work / "prepared.onnx"
    onnx.save(model, str(cleaned))
    # Symbolic shape inference stops on the exporter's graph ("Incomplete symbolic shape inference"); ONNX's
    # own shape inference and ORT's graph optimizations are the parts of pre-processing that still apply.
    quant_pre_process(str(cleaned), str(prepared), skip_symbolic_shape=True)
    quantize_dynamic(str(prepared), str(int8_path), weight_type=QuantType.QInt8)
    cleaned.unlink()
    prepared.unlink()


def writable_dir(path: Path, expected: str = "a writable directory") -> None:
    """Create `path` if needed and prove a file can be written in it; else one line naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise AlembertError(f"output {path}: cannot write there ({err.strerror or err}; expected {expected})") \
            from err


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def _recorded_source(output: Path) -> str | None:
    """The model an earlier export into `output` came from, as its export.json records it."""
    try:
        source = json.loads((output / RECORD_FILE).read_text(encoding="utf-8")).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return source if isinstance(source, str) else None


def _side_files(model_dir: Path, output: Path) -> list[str]:
    """The config and tokenizer files copied beside the ONNX model (none when exporting into the model's folder)."""
    if output.exists() and output.resolve() == model_dir.resolve():
        return []
    return [name for name in _SIDE_FILES if (model_dir / name).is_file()]


def check_output_dir(model_dir: Path, output: Path, int8: bool, overwrite: bool) -> list[str]:
    """The files in `output` this export will replace (or remove: a stale model.int8.onnx); refused (one line) when
    the folder holds another model's files.

    Any model file there counts (config, tokenizer, weights, ONNX files), except a config or tokenizer file with
    the very bytes this export copies. They may be replaced only when `output` is an earlier export of this model
    (export.json names it) or with `overwrite`. Weights of a model are never taken for an earlier export."""
    if not output.is_dir():
        return []
    own = {MODEL_FILE, INT8_FILE, RECORD_FILE}
    into_model = output.resolve() == model_dir.resolve()
    clashes, weights = [], []
    for path in sorted(output.iterdir()):
        name = path.name
        if not path.is_file() or name.startswith("."):
            continue
        if into_model:
            if name in own:
                clashes.append(name)
        elif name in own or name in _SIDE_FILES or name.endswith(_WEIGHT_SUFFIXES):
            if name in _SIDE_FILES and (model_dir / name).is_file() and _same_bytes(model_dir / name, path):
                continue  # the same file: copying it changes nothing
            clashes.append(name)
            if name not in own and name.endswith(_WEIGHT_SUFFIXES):
                weights.append(name)
    earlier = _recorded_source(output) == str(model_dir.resolve()) and not weights
    if clashes and not (overwrite or earlier):
        whose = "another model's files" if _recorded_source(output) is None else \
            f"files exported from another model ({_recorded_source(output)})"
        raise AlembertError(f"output {output}: holds {whose} ({', '.join(clashes)}), which this export would "
                            "overwrite or mix with its own (expected an empty or new folder, or an earlier export of "
                            "this model; choose another --output, or pass --overwrite to replace them)")
    written = own | set(_side_files(model_dir, output))
    return [name for name in clashes if name in written]


def export_onnx(model_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None, int8: bool = False,
                opset: int = DEFAULT_OPSET, max_length: int | None = None, task: str | dict | None = None,
                data_dir: str | None = None, limit: int | None = None, overwrite: bool = False) -> dict:
    """Export MODEL to ONNX (default folder <model_dir>/onnx), check it against PyTorch, and return a summary:
    paths, file sizes in bytes, the fp32 max abs logit difference, the int8 difference and argmax agreement,
    with `task` each backend's dev metrics, and the existing files it replaced. `max_length` (default 128, or the
    model's limit when that is smaller) is the longest check and task input (a token-classification task's
    sentences, read whole, default to the model's limit); beyond the model's limit it is refused.
    A folder holding another model's files is refused unless `overwrite` (see check_output_dir)."""
    from alembert.models.loading import check_max_length, position_limit

    model_dir = Path(model_dir)
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 4):
        raise AlembertError(f"export max_length: expected an integer >= 4, got {max_length!r}")
    task_obj = None
    if task is not None:
        from alembert.tasks import get_task

        task_obj = get_task(task, data_dir)
    model, tokenizer = load_checkpoint(model_dir, task_obj.num_labels if task_obj else None, task_obj)
    given = max_length
    if max_length is None:
        max_length = min(DEFAULT_MAX_LENGTH, position_limit(model) or DEFAULT_MAX_LENGTH)
    else:
        check_max_length(model, max_length, "export max_length")
    output = Path(output_dir) if output_dir is not None else model_dir / "onnx"
    replaced = check_output_dir(model_dir, output, int8, overwrite)  # before minutes of work, not after
    created = not output.exists()
    writable_dir(output)
    try:
        with tempfile.TemporaryDirectory(prefix=".alembert-export-", dir=output) as tmp:
            work = Path(tmp)
            checks, task_result = _export_checked(model, tokenizer, model_dir, work, int8, opset, max_length,
                                                  task_obj, limit, given)
            result = _summary(model, model_dir, output, work, opset, int8, checks, task_result, replaced)
            _place(model_dir, output, work, int8, result)
    except BaseException:
        if created:  # a failed export leaves nothing behind
            shutil.rmtree(output, ignore_errors=True)
        raise
    return result


def _summary(model, model_dir, output, work, opset, int8, checks, task_result, replaced) -> dict:
    result = {"model": str(model_dir), "output_dir": str(output), "opset": opset, "inputs": input_names(model),
              "fp32": {"path": str(output / MODEL_FILE), "bytes": (work / MODEL_FILE).stat().st_size,
                       "max_abs_diff": checks["fp32"]["max_abs_diff"]}}
    if int8:
        result["int8"] = {"path": str(output / INT8_FILE), "bytes": (work / INT8_FILE).stat().st_size,
                          "max_abs_diff": checks["int8"]["max_abs_diff"],
                          "argmax_agreement": checks["int8"]["argmax_agreement"]}
    if task_result:
        result["task"] = task_result
    if replaced:  # nothing existing changes silently
        result["replaced"] = [name for name in replaced if name != INT8_FILE or int8]
        if not int8 and INT8_FILE in replaced:
            result["removed"] = [INT8_FILE]  # an int8 model of the weights this export replaces would mislead
    return result


def _place(model_dir: Path, output: Path, work: Path, int8: bool, result: dict) -> None:
    """Copy the side files into `work` beside the checked ONNX files and the record, then rename each into
    `output`: a full disk fails while copying, before anything in `output` has changed."""
    names = [MODEL_FILE] + ([INT8_FILE] if int8 else [])
    for name in _side_files(model_dir, output):
        shutil.copy2(model_dir / name, work / name)
        names.append(name)
    record = dict(result, source=str(model_dir.resolve()), files=names + [RECORD_FILE])
    (work / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for name in names + [RECORD_FILE]:
        os.replace(work / name, output / name)
    for name in result.get("removed", ()):
        (output / name).unlink(missing_ok=True)


def _export_checked(model, tokenizer, model_dir, work, int8, opset, max_length, task, limit, given=None):
    """Export (and quantize) into `work` and check the result against PyTorch."""
    names = input_names(model)
    export_fp32(model, names, work / MODEL_FILE, opset)
    if int8:
        quantize_int8(work / MODEL_FILE, work / INT8_FILE)
    sessions = {"fp32": make_session(work / MODEL_FILE)}
    if int8:
        sessions["int8"] = make_session(work / INT8_FILE)
    checks = compare(model, sessions, check_inputs(tokenizer, names, model.config.vocab_size, max_length))
    if checks["fp32"]["max_abs_diff"] > FP32_TOLERANCE:
        raise AlembertError(f"model {model_dir}: ONNX fp32 logits differ from PyTorch by "
                            f"{checks['fp32']['max_abs_diff']:.2e} (expected <= {FP32_TOLERANCE:g})")
    task_result = _task_check(model, tokenizer, sessions, task, limit, given) if task else None
    del sessions  # release the files before moving them
    return checks, task_result


def _task_check(model, tokenizer, sessions, task, limit, max_length: int | None) -> dict:
    """Dev metrics of PyTorch and each ONNX model; fp32 must match PyTorch within METRIC_TOLERANCE points."""
    from alembert.data.encoded import encode_examples
    from alembert.evaluation.scoring import score, score_with, task_length

    data = encode_examples(task.load("dev", limit), tokenizer, task_length(task, model, max_length))
    metrics = {"torch-fp32": score(model, data, task, 64)}
    for name, session in sessions.items():
        metrics[f"onnx-{name}"] = score_with(lambda batch, s=session: onnx_logits(s, batch), data, task, 64)
    main = task.main_metric
    result = {"name": task.name, "split": "dev", "examples": len(data), "main_metric": main, "metrics": metrics}
    fp32_gap = abs(metrics["onnx-fp32"][main] - metrics["torch-fp32"][main])
    if fp32_gap > METRIC_TOLERANCE:
        raise AlembertError(f"model {model.name_or_path}: ONNX fp32 dev {main} {metrics['onnx-fp32'][main]:.2f} "
                            f"differs from PyTorch {metrics['torch-fp32'][main]:.2f} (expected within "
                            f"{METRIC_TOLERANCE} points)")
    if "onnx-int8" in metrics:
        result["int8_drop"] = metrics["torch-fp32"][main] - metrics["onnx-int8"][main]
    return result
