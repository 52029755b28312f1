"""What each axis of each parameter of an encoder indexes, so that width extraction slices it consistently.

Axis kinds:
- "h": the hidden width (the residual stream), one index set for the embeddings and every layer;
- "e": the embedding width: "h" where the embeddings feed the layers directly, kept whole where a linear map
  (ELECTRA, DeBERTa, ALBERT) takes them to the hidden width;
- "q": a layer's query/key output units (heads x head dimensions; Q and K must keep the same units, as must
  DeBERTa's position projections, whose products with Q and K make its c2p/p2c terms);
- "v": a layer's value units, which are also the attention-output projection's input units;
- "qkv": ModernBERT's fused projection, rows Q then K then V;
- "f": a layer's FFN neurons; "g": ModernBERT's gated FFN input, rows input then gate;
- "a": attention heads (MPNet's relative position bias, one column a head, shared by all layers);
- "-": kept whole (vocabulary, positions, labels, kernel taps).
A parameter no rule names makes width extraction refuse the model rather than guess.
"""
from __future__ import annotations

import re

from alembert.errors import AlembertError
from alembert.models.layout import Layout

# outside the layers; full names, the base prefix (bert., roberta., ...) matched by (\w+\.)?
_OUTSIDE = [(re.compile(pattern), kinds) for pattern, kinds in (
    (r"deberta\.embeddings\.LayerNorm\.(weight|bias)", ("h",)),  # DeBERTa normalises after its projection
    (r"\w+\.embeddings\.(word|position|token_type|tok)_embeddings\.weight", ("-", "e")),
    (r"\w+\.embeddings\.(LayerNorm|norm)\.(weight|bias)", ("e",)),
    (r"\w+\.(embeddings_project|embeddings\.embed_proj|encoder\.embedding_hidden_mapping_in)\.weight", ("h", "-")),
    (r"\w+\.(embeddings_project|embeddings\.embed_proj|encoder\.embedding_hidden_mapping_in)\.bias", ("h",)),
    (r"mpnet\.encoder\.relative_attention_bias\.weight", ("-", "a")),
    (r"deberta\.encoder\.rel_embeddings\.weight", ("-", "h")),
    (r"deberta\.encoder\.(LayerNorm|conv\.LayerNorm)\.(weight|bias)", ("h",)),
    (r"deberta\.encoder\.conv\.conv\.weight", ("h", "h", "-")),
    (r"deberta\.encoder\.conv\.conv\.bias", ("h",)),
    (r"model\.final_norm\.(weight|bias)", ("h",)),
    # heads: a hidden-to-hidden map (pooler, pre-classifier, dense), its norm, then the labels
    (r"(\w+\.)?(pooler\.dense|pooler|pre_classifier|classifier\.dense|head\.dense)\.weight", ("h", "h")),
    (r"(\w+\.)?(pooler\.dense|pooler|pre_classifier|classifier\.dense|head\.dense)\.bias", ("h",)),
    (r"head\.norm\.(weight|bias)", ("h",)),
    (r"classifier(\.out_proj)?\.weight", ("-", "h")),
    (r"classifier(\.out_proj)?\.bias", ("-",)),
)]


def layer_roles(layout: Layout) -> dict[str, tuple[str, ...]]:
    """Kinds of the parameters inside one layer, by their name in the layer."""
    q, k, v = layout.qkv_names
    roles = {}

    def linear(name, out, into):
        roles[f"{name}.weight"], roles[f"{name}.bias"] = (out, into), (out,)
    if layout.qkv_fused:
        linear(q, "qkv", "h")
    else:
        linear(q, "q", "h")
        linear(k, "q", "h")
        linear(v, "v", "h")
    linear(layout.attn_out_name, "h", "v")
    linear(layout.ffn_in_name, "g" if layout.family == "modernbert" else "f", "h")
    linear(layout.ffn_out_name, "h", "f")
    for norm in layout.norm_names:
        roles[f"{norm}.weight"], roles[f"{norm}.bias"] = ("h",), ("h",)
    if layout.family == "deberta-v2":  # separate position projections (share_att_key: false)
        linear("attention.self.pos_key_proj", "q", "h")
        linear("attention.self.pos_query_proj", "q", "h")
    return roles


def parameter_roles(layout: Layout, name: str) -> tuple[tuple[str, ...], int | None, str]:
    """(kinds, layer index or None, name inside the layer or the full name) of one parameter."""
    prefix = layout.layers_path + "."
    if name.startswith(prefix):
        index, inner = name[len(prefix):].split(".", 1)
        kinds = layer_roles(layout).get(inner)
        if kinds is not None:
            return kinds, int(index), inner
    else:
        for pattern, kinds in _OUTSIDE:
            if pattern.fullmatch(name):
                embedded = "-" if layout.embed_proj_path else "h"
                return tuple(embedded if kind == "e" else kind for kind in kinds), None, name
    raise AlembertError(f"model type '{layout.family}': width extraction has no rule for parameter {name}; "
                        "extract depth only (leave student.hidden, heads and ffn unset)")
