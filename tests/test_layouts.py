"""Where each family keeps its parts, and the hook on hidden state 0 that fires once per pass."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification, CamembertConfig

from alembert.errors import AlembertError
from alembert.models.features import FeatureRequest, FeatureTap, check_request
from alembert.models.layout import find_layout, get_layers, hook_layer_input, layer_groups
from families import FAMILIES


def _model(family):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(FAMILIES[family]()).eval()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_part_named_by_the_layout_exists(family):
    model = _model(family)
    layout = find_layout(model)
    assert (layout.num_layers, layout.num_heads, layout.hidden_size, layout.head_size, layout.ffn_size) == \
        (3, 4, 32, 8, 64)
    assert layout.family == model.config.model_type and layout.known
    layer = layer_groups(model, layout)[0]
    for name in {*layout.qkv_names, layout.attn_out_name, layout.ffn_in_name, layout.ffn_out_name}:
        assert isinstance(layer.get_submodule(name), torch.nn.Linear), name
    for name in layout.norm_names:  # ModernBERT's first layer has an Identity where the others have a LayerNorm
        assert isinstance(layer_groups(model, layout)[-1].get_submodule(name), torch.nn.LayerNorm), name
    model.get_submodule(layout.embeddings_path)
    assert (layout.embed_proj_path is not None) == (family in ("electra", "deberta-v2", "albert"))
    if layout.embed_proj_path:
        assert model.get_submodule(layout.embed_proj_path).out_features == 32
    assert layout.qkv_fused == (family == "modernbert") and layout.shared_layers == (family == "albert")


@pytest.mark.parametrize("family", ["bert", "albert", "deberta-v3"])
def test_hook_on_hidden_state_0_fires_once_and_can_replace_it(family):
    model = _model(family)
    layout = find_layout(model)
    batch = {"input_ids": torch.randint(5, 99, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    seen = []
    handle = hook_layer_input(model, layout, lambda x: seen.append(x.clone()) or x.flip(0), prepend=True)
    with FeatureTap(model, FeatureRequest(hidden=frozenset({0, 1}))) as tap, torch.no_grad():
        feats = tap.run(batch)
    handle.remove()
    assert len(seen) == 1 and seen[0].shape == (2, 6, 32)
    torch.testing.assert_close(feats.hidden[0], seen[0].flip(0))  # the tap sees the replaced input
    reference = model(**batch, output_hidden_states=True).hidden_states
    torch.testing.assert_close(seen[0], reference[0])


def test_albert_has_no_first_layer_to_hook():
    model = _model("albert")
    with pytest.raises(AlembertError, match="model type 'albert': its 3 layers are one shared module"):
        get_layers(model, find_layout(model))


def test_a_bert_shaped_model_of_another_type_gives_hidden_states_and_q_k_v_but_not_scores():
    config = CamembertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, pad_token_id=1)
    model = AutoModelForSequenceClassification.from_config(config)
    layout = find_layout(model)
    assert layout.family == "camembert" and not layout.known and layout.num_layers == 2
    check_request(layout, FeatureRequest(hidden=frozenset({0, 2}), qkv=frozenset({1})), "x")
    with pytest.raises(AlembertError, match="model type 'camembert': attention scores are not collected"):
        check_request(layout, FeatureRequest(attention=frozenset({1})), "stages.0.losses.0 (attention_kl)")


def test_unknown_layouts_are_refused_in_one_line():
    from transformers import GPT2Config

    model = AutoModelForSequenceClassification.from_config(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=9))
    with pytest.raises(AlembertError, match="model type 'gpt2': layout not supported"):
        find_layout(model)
