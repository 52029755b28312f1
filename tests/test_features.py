"""Hooks on unmodified HF modules agree with HF's own output_hidden_states / output_attentions, for every family."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from alembert.errors import AlembertError
from alembert.models.features import FeatureRequest, FeatureTap, check_request
from alembert.models.layout import find_layout
from families import FAMILIES, VOCAB

ALL = frozenset({0, 1, 2, 3})
LAYERS = frozenset({1, 2, 3})


def _model(family: str, attention: str = "eager"):
    torch.manual_seed(0)
    config = FAMILIES[family]()
    config._attn_implementation = attention  # HF returns attentions only from the eager kernel
    return AutoModelForSequenceClassification.from_config(config).eval()


def _batch():
    ids = torch.randint(5, VOCAB, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding in one example exercises the mask
    mask[2, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _close_on_real_rows(ours, theirs, mask):
    real = mask[:, None, :, None].bool()  # rows of real query tokens; padded rows differ by convention
    torch.testing.assert_close(ours * real, theirs * real, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hidden_states_and_qkv_match_hf_outputs(family):
    model, batch = _model(family), _batch()
    reference = model(**batch, output_hidden_states=True, output_attentions=True)
    request = FeatureRequest(hidden=ALL, qkv=LAYERS)
    with FeatureTap(model, request) as tap, torch.no_grad():
        feats = tap.run(batch)
    torch.testing.assert_close(feats.logits, reference.logits)
    for i in range(4):
        torch.testing.assert_close(feats.hidden[i], reference.hidden_states[i])
    for layer in LAYERS:
        q, k, v = feats.qkv[layer]
        assert q.shape == k.shape == v.shape == (3, 4, 9, 8)
    if family != "modernbert":
        return
    # ModernBERT's Q and K must be the rotated ones its attention uses: with them, and its local window, softmax
    # rebuilds its eager attention in every layer
    window = model.config.sliding_window
    distance = (torch.arange(9)[:, None] - torch.arange(9)[None, :]).abs()
    for layer, kind in zip(LAYERS, model.config.layer_types):
        q, k, _ = feats.qkv[layer]
        scores = q @ k.transpose(-1, -2) / 8 ** 0.5 + (1.0 - batch["attention_mask"][:, None, None, :]) * -1e4
        if kind == "sliding_attention":
            scores = scores.masked_fill(distance > window, -1e4)
        _close_on_real_rows(scores.softmax(-1), reference.attentions[layer - 1], batch["attention_mask"])


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"modernbert"}))
def test_attention_scores_match_the_models_own_eager_attention(family):
    model, batch = _model(family), _batch()
    reference = model(**batch, output_attentions=True)
    with FeatureTap(model, FeatureRequest(attention=LAYERS)) as tap, torch.no_grad():
        feats = tap.run(batch)
    for layer in LAYERS:
        _close_on_real_rows(feats.attention_probs(layer), reference.attentions[layer - 1], batch["attention_mask"])
        assert (feats.scores[layer][1, :, :, 6:] <= -100).all()  # BERT's additive mask on padded keys


def test_mpnet_and_deberta_scores_are_not_q_dot_k_alone():
    """The families whose attention adds position terms: dropping them would change the maps noticeably."""
    for family in ("mpnet", "deberta-v3"):
        model, batch = _model(family), _batch()
        with FeatureTap(model, FeatureRequest(attention=frozenset({1}), qkv=frozenset({1}))) as tap, torch.no_grad():
            feats = tap.run(batch)
        q, k, _ = feats.qkv[1]
        plain = q @ k.transpose(-1, -2) / 8 ** 0.5
        assert (feats.scores[1][0] - plain[0]).abs().max() > 1e-3, family


def test_albert_hidden_state_i_is_the_i_th_application_of_its_shared_layer():
    model, batch = _model("albert"), _batch()
    reference = model(**batch, output_hidden_states=True)
    with FeatureTap(model, FeatureRequest(hidden=frozenset({2}), qkv=frozenset({3}))) as tap, torch.no_grad():
        feats = tap.run(batch)
        again = tap.run(batch)  # the application count restarts with every pass
    torch.testing.assert_close(feats.hidden[2], reference.hidden_states[2])
    torch.testing.assert_close(again.hidden[2], reference.hidden_states[2])
    assert not torch.allclose(reference.hidden_states[1], reference.hidden_states[2])  # the depths differ
    # Q of the third application is the shared query projection applied to hidden state 2
    query = model.albert.encoder.albert_layer_groups[0].albert_layers[0].attention.query
    expected = query(reference.hidden_states[2]).view(3, 9, 4, 8).transpose(1, 2)
    torch.testing.assert_close(feats.qkv[3][0], expected)


def test_albert_refuses_q_k_v_of_several_inner_layers():
    config = FAMILIES["albert"]()
    config.inner_group_num = 2
    inner = AutoModelForSequenceClassification.from_config(config)
    with pytest.raises(AlembertError, match=r"model type 'albert': Q/K/V are not collected \(each of its layers runs"):
        check_request(inner, FeatureRequest(qkv=frozenset({1})), "stages.ild.losses.0 (relation)")


def test_unsupported_features_are_refused_in_one_line_before_any_pass():
    model = _model("modernbert")
    check_request(model, FeatureRequest(hidden=ALL, qkv=LAYERS), "hidden")  # these are collected
    with pytest.raises(AlembertError) as err:
        check_request(find_layout(model), FeatureRequest(attention=frozenset({2})),
                      "stages.ild.losses.1 (attention_mse)")
    assert str(err.value) == (
        "stages.ild.losses.1 (attention_mse): model type 'modernbert': attention scores are not collected (rotary "
        "position embeddings and sliding-window local attention); use hidden-state, Q/K/V relation or prediction "
        "losses")
    with pytest.raises(AlembertError, match="model type 'modernbert': attention scores"):
        FeatureTap(model, FeatureRequest(attention=frozenset({1})))
    with pytest.raises(AlembertError, match=r"hidden index 4 is out of range .* \(expected 0\.\.3\)"):
        check_request(model, FeatureRequest(hidden=frozenset({4})), "x")


@pytest.mark.parametrize("family", ["bert", "modernbert", "deberta-v3", "albert"])
def test_features_do_not_depend_on_the_attention_kernel(family):
    batch = _batch()
    request = FeatureRequest(hidden=ALL, qkv=LAYERS, attention=frozenset() if family == "modernbert" else LAYERS)
    results = []
    for kernel in ("eager", "sdpa"):
        try:
            model = _model(family, kernel)
        except ValueError:  # DeBERTa has no SDPA kernel
            continue
        with FeatureTap(model, request) as tap, torch.no_grad():
            results.append(tap.run(batch))
    for a, b in zip(results, results[1:]):
        torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-4)
        real = batch["attention_mask"][:, None, :, None].bool()
        for layer in request.attention:
            torch.testing.assert_close(a.scores[layer] * real, b.scores[layer] * real, atol=1e-4, rtol=1e-4)


def test_scores_keep_the_gradient_of_the_student():
    model = _model("deberta-v3").train()
    with FeatureTap(model, FeatureRequest(attention=frozenset({2}))) as tap:
        tap.run(_batch()).scores[2].sum().backward()
    assert model.deberta.encoder.rel_embeddings.weight.grad.abs().sum() > 0  # through the c2p/p2c terms
    assert model.deberta.encoder.layer[1].attention.self.query_proj.weight.grad.abs().sum() > 0


def test_only_requested_layers_are_hooked():
    model = _model("bert")
    tap = FeatureTap(model, FeatureRequest(hidden=frozenset({3})))
    assert len(tap._handles) == 1
    tap.close()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_deberta_scores_follow_its_dropped_out_relative_embeddings_in_training():
    """In training DeBERTa drops out its relative embeddings in each layer: the scores must use the ones it used."""
    config = FAMILIES["deberta-v3"]()
    config.hidden_dropout_prob, config.attention_probs_dropout_prob = 0.5, 0.0
    config._attn_implementation = "eager"
    config.output_attentions = True
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).train()
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append(output.attentions))
    batch = _batch()
    with FeatureTap(model, FeatureRequest(attention=LAYERS)) as tap, torch.no_grad():
        feats = tap.run(batch)
    for layer in LAYERS:
        _close_on_real_rows(feats.attention_probs(layer), seen[0][layer - 1], batch["attention_mask"])
