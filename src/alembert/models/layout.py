"""Where the parts of an unmodified Hugging Face encoder live, per model family.

Each family alembert knows is described once (`_FAMILIES`): the list of transformer layers, and inside one layer
the Q/K/V projections, the attention-output projection, the FFN's input and output projections and the LayerNorms
over the hidden width; outside the layers, the embeddings and the linear map that some families put between the
embedding width and the hidden width (ELECTRA, DeBERTa, ALBERT). Families: BERT, RoBERTa, XLM-R, ELECTRA,
DistilBERT, MPNet, DeBERTa-v2/v3, ALBERT and ModernBERT. Any other model type whose layers look like BERT's is
accepted for hidden states and Q/K/V only (its attention may have terms alembert does not know of).

The layout also says which features can be collected right for the family (`scores_refused`, `qkv_refused`), so
the engine can refuse a loss before training rather than train on wrong features.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Callable

from torch import nn

from alembert.errors import AlembertError


@dataclass(frozen=True)
class _Family:
    layers: str  # ModuleList of the layers, under the base model
    qkv: tuple[str, str, str]  # inside one layer; three equal names mean one fused projection (rows q, k, v)
    attn_out: str
    ffn_in: str
    ffn_out: str
    norms: tuple[str, ...]  # LayerNorms over the hidden width inside one layer
    embed_proj: str | None = None  # embedding width -> hidden width, under the base model, when the config has it
    scores: str = "bert"  # how pre-softmax scores are rebuilt (models/scores.py); "" when they are not
    scores_refused: str | None = None  # why not, for the one-line refusal
    qkv_note: str | None = None


_BERT = _Family("encoder.layer", ("attention.self.query", "attention.self.key", "attention.self.value"),
                "attention.output.dense", "intermediate.dense", "output.dense",
                ("attention.output.LayerNorm", "output.LayerNorm"))
_ALBERT_LAYER = "albert_layers.0."  # one shared layer per group; inner_group_num > 1 is refused where it matters

_FAMILIES = {
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "electra": replace(_BERT, embed_proj="embeddings_project"),
    "distilbert": _Family("transformer.layer", ("attention.q_lin", "attention.k_lin", "attention.v_lin"),
                          "attention.out_lin", "ffn.lin1", "ffn.lin2", ("sa_layer_norm", "output_layer_norm")),
    "mpnet": _Family("encoder.layer", ("attention.attn.q", "attention.attn.k", "attention.attn.v"),
                     "attention.attn.o", "intermediate.dense", "output.dense",
                     ("attention.LayerNorm", "output.LayerNorm"), scores="mpnet"),
    "deberta-v2": _Family("encoder.layer", ("attention.self.query_proj", "attention.self.key_proj",
                                            "attention.self.value_proj"),
                          "attention.output.dense", "intermediate.dense", "output.dense",
                          ("attention.output.LayerNorm", "output.LayerNorm"), embed_proj="embeddings.embed_proj",
                          scores="deberta"),
    "albert": _Family("encoder.albert_layer_groups",
                      tuple(_ALBERT_LAYER + f"attention.{n}" for n in ("query", "key", "value")),
                      _ALBERT_LAYER + "attention.dense", _ALBERT_LAYER + "ffn", _ALBERT_LAYER + "ffn_output",
                      (_ALBERT_LAYER + "attention.LayerNorm", _ALBERT_LAYER + "full_layer_layer_norm"),
                      embed_proj="encoder.embedding_hidden_mapping_in"),
    "modernbert": _Family("layers", ("attn.Wqkv",) * 3, "attn.Wo", "mlp.Wi", "mlp.Wo", ("attn_norm", "mlp_norm"),
                          scores="", scores_refused="rotary position embeddings and sliding-window local attention",
                          qkv_note="Q and K are taken after the rotary embedding, as attention uses them"),
}


@dataclass(frozen=True)
class Layout:
    layers_path: str  # dotted path of the ModuleList of transformer layers, from the top model
    qkv_names: tuple[str, str, str]  # paths of the Q/K/V projections inside one layer (all equal when fused)
    num_layers: int
    num_heads: int
    hidden_size: int
    family: str = "bert"  # the config's model_type
    head_size: int = 0
    ffn_size: int = 0
    attn_out_name: str = "attention.output.dense"
    ffn_in_name: str = "intermediate.dense"
    ffn_out_name: str = "output.dense"
    norm_names: tuple[str, ...] = ()
    embeddings_path: str = ""
    embed_proj_path: str | None = None  # from the top model; None when embeddings are already hidden-wide
    shared_layers: bool = False  # ALBERT: one module per group, applied num_layers times in all
    first_output_path: str | None = None  # DeBERTa-v2's convolution, whose output replaces the first layer's
    last_output_path: str | None = None  # ModernBERT's final LayerNorm, whose output is its last hidden state
    scores_rule: str = "bert"
    scores_refused: str | None = None  # why attention scores cannot be collected right, or None
    qkv_refused: str | None = None
    known: bool = True  # one of the families described here (not only BERT-shaped)

    @property
    def qkv_fused(self) -> bool:
        return len(set(self.qkv_names)) == 1


def _config_value(config, *names):
    for name in names:
        if getattr(config, name, None) is not None:
            return getattr(config, name)
    raise AlembertError(f"model config ({config.model_type}): none of {', '.join(names)} is set")


def _family_of(model: nn.Module) -> tuple[str, _Family]:
    kind = model.config.model_type
    if kind in _FAMILIES:
        return kind, _FAMILIES[kind]
    # a BERT-shaped layer of a model type not described here: hidden states and Q/K/V are what they are, but its
    # attention may add terms (relative positions, ...) that a rebuild from Q and K would miss
    for layers, qkv in (("encoder.layer", _BERT.qkv), ("transformer.layer", _FAMILIES["distilbert"].qkv)):
        found = _submodule(model, f"{model.base_model_prefix}.{layers}")
        if isinstance(found, nn.ModuleList) and len(found) and all(_submodule(found[0], n) for n in qkv):
            base = _BERT if layers == "encoder.layer" else _FAMILIES["distilbert"]
            return kind, replace(base, scores="", scores_refused="its attention is not among those alembert checks")
    raise AlembertError(
        f"model type '{kind}': layout not supported (expected one of {', '.join(sorted(_FAMILIES))}, or BERT-style "
        "encoder layers)")


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def find_layout(model: nn.Module) -> Layout:
    kind, family = _family_of(model)
    config, base = model.config, model.base_model_prefix
    layers_path = f"{base}.{family.layers}"
    layers = _submodule(model, layers_path)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise AlembertError(f"model type '{kind}': no transformer layers at {layers_path}")
    heads = _config_value(config, "num_attention_heads", "n_heads")
    hidden = _config_value(config, "hidden_size", "dim")
    proj = f"{base}.{family.embed_proj}" if family.embed_proj else None
    if proj is not None and _submodule(model, proj) is None:
        proj = None  # ELECTRA and DeBERTa have the map only when the embedding width differs
    conv = f"{base}.encoder.conv" if kind == "deberta-v2" else None
    if conv is not None and _submodule(model, conv) is None:
        conv = None
    qkv_refused = None
    if kind == "albert" and getattr(config, "inner_group_num", 1) != 1:
        qkv_refused = f"each of its layers runs {config.inner_group_num} inner layers (inner_group_num)"
    return Layout(
        layers_path=layers_path,
        qkv_names=family.qkv,
        num_layers=config.num_hidden_layers if kind == "albert" else len(layers),
        num_heads=heads,
        hidden_size=hidden,
        family=kind,
        head_size=getattr(config, "attention_head_size", None) or hidden // heads,
        ffn_size=_config_value(config, "intermediate_size", "hidden_dim"),
        attn_out_name=family.attn_out,
        ffn_in_name=family.ffn_in,
        ffn_out_name=family.ffn_out,
        norm_names=family.norms,
        embeddings_path=f"{base}.embeddings",
        embed_proj_path=proj,
        shared_layers=kind == "albert",
        first_output_path=conv,
        last_output_path=f"{base}.final_norm" if kind == "modernbert" else None,
        scores_rule=family.scores,
        scores_refused=family.scores_refused or qkv_refused,
        qkv_refused=qkv_refused,
        known=kind in _FAMILIES,
    )


def get_layers(model: nn.Module, layout: Layout) -> nn.ModuleList:
    """The transformer layers, in order. Refused for ALBERT, whose layers are one module applied again and again:
    a hook on "the first layer" would fire at every depth (use `hook_layer_input` for hidden state 0)."""
    if layout.shared_layers:
        raise AlembertError(
            f"model type '{layout.family}': its {layout.num_layers} layers are one shared module, so a hook on its "
            "first layer would fire at every layer; hook its input with hook_layer_input")
    return model.get_submodule(layout.layers_path)


def layer_groups(model: nn.Module, layout: Layout) -> nn.ModuleList:
    """The modules that run the layers: the layers themselves, or ALBERT's shared groups."""
    return model.get_submodule(layout.layers_path)


def hook_layer_input(model: nn.Module, layout: Layout, fn: Callable, prepend: bool = False):
    """Call `fn(x)` once per forward pass on hidden state 0, the input of the first transformer layer; a tensor it
    returns replaces x. Returns the hook's handle. For ALBERT, whose first layer is also every other layer, the hook
    sits on the output of the map from embedding width to hidden width, which is that same tensor."""
    if layout.shared_layers:
        def on_output(module, args, output):
            return fn(output)
        return model.get_submodule(layout.embed_proj_path).register_forward_hook(on_output, prepend=prepend)

    def on_input(module, args, kwargs):
        if args:
            new = fn(args[0])
            return None if new is None else ((new,) + tuple(args[1:]), kwargs)
        key = next(iter(kwargs))
        new = fn(kwargs[key])
        return None if new is None else (args, dict(kwargs, **{key: new}))
    return get_layers(model, layout)[0].register_forward_pre_hook(on_input, with_kwargs=True, prepend=prepend)


def takes_token_types(model: nn.Module) -> bool:
    """DistilBERT has no segment embeddings. Ask the class: accelerate may wrap the bound forward."""
    return "token_type_ids" in inspect.signature(type(model).forward).parameters
