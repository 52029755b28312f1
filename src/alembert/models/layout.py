"""Where the parts of an unmodified Hugging Face encoder live, for the layouts alembert knows.

BERT, RoBERTa, ELECTRA (and MiniLM, which is BERT) keep their layers in `<base>.encoder.layer` with
`attention.self.{query,key,value}`; DistilBERT keeps them in `distilbert.transformer.layer` with
`attention.{q_lin,k_lin,v_lin}`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from torch import nn

from alembert.errors import AlembertError

_LAYER_LISTS = ("encoder.layer", "transformer.layer")
_QKV_NAMES = (("attention.self.query", "attention.self.key", "attention.self.value"),
              ("attention.q_lin", "attention.k_lin", "attention.v_lin"))


@dataclass(frozen=True)
class Layout:
    layers_path: str  # dotted path of the ModuleList of transformer layers, from the top model
    qkv_names: tuple[str, str, str]  # paths of the Q/K/V projections inside one layer
    num_layers: int
    num_heads: int
    hidden_size: int


def _config_value(config, *names):
    for name in names:
        if getattr(config, name, None) is not None:
            return getattr(config, name)
    raise AlembertError(f"model config ({config.model_type}): none of {', '.join(names)} is set")


def find_layout(model: nn.Module) -> Layout:
    base = model.base_model_prefix
    modules = dict(model.named_modules())
    for layers in _LAYER_LISTS:
        path = f"{base}.{layers}"
        if isinstance(modules.get(path), nn.ModuleList) and len(modules[path]) > 0:
            first = modules[path][0]
            inner = dict(first.named_modules())
            for qkv in _QKV_NAMES:
                if all(name in inner for name in qkv):
                    config = model.config
                    return Layout(
                        layers_path=path,
                        qkv_names=qkv,
                        num_layers=len(modules[path]),
                        num_heads=_config_value(config, "num_attention_heads", "n_heads"),
                        hidden_size=_config_value(config, "hidden_size", "dim"),
                    )
    raise AlembertError(
        f"model type '{model.config.model_type}': layout not supported (expected BERT, RoBERTa, ELECTRA or DistilBERT "
        "style encoder layers)"
    )


def get_layers(model: nn.Module, layout: Layout) -> nn.ModuleList:
    return model.get_submodule(layout.layers_path)


def takes_token_types(model: nn.Module) -> bool:
    """DistilBERT has no segment embeddings. Ask the class: accelerate may wrap the bound forward."""
    return "token_type_ids" in inspect.signature(type(model).forward).parameters
