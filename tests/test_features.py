"""Hooks on unmodified HF modules agree with HF's own output_hidden_states / output_attentions."""
import pytest
import torch
from transformers import (AutoModelForSequenceClassification, BertConfig, DistilBertConfig, ElectraConfig,
                          RobertaConfig)

from alembert.models.features import FeatureRequest, FeatureTap
from alembert.models.layout import find_layout

CONFIGS = {
    "bert": lambda: BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                               intermediate_size=64),
    "roberta": lambda: RobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                     intermediate_size=64, pad_token_id=1),
    "electra": lambda: ElectraConfig(vocab_size=99, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                                     num_attention_heads=4, intermediate_size=64),
    "distilbert": lambda: DistilBertConfig(vocab_size=99, dim=32, n_layers=3, n_heads=4, hidden_dim=64),
}


def _batch():
    ids = torch.randint(5, 99, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding in one example exercises the mask
    mask[2, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_hooks_match_hf_outputs(arch):
    torch.manual_seed(0)
    config = CONFIGS[arch]()
    config._attn_implementation = "eager"  # HF returns attentions only from the eager kernel
    model = AutoModelForSequenceClassification.from_config(config).eval()
    batch = _batch()
    reference = model(**batch, output_hidden_states=True, output_attentions=True)
    request = FeatureRequest(hidden=frozenset({0, 1, 2, 3}), attention=frozenset({1, 2, 3}), qkv=frozenset({2}))
    with FeatureTap(model, request) as tap, torch.no_grad():
        feats = tap.run(batch)
    torch.testing.assert_close(feats.logits, reference.logits)
    for i in range(4):
        torch.testing.assert_close(feats.hidden[i], reference.hidden_states[i])
    real = batch["attention_mask"][:, None, :, None].bool()  # compare rows of real query tokens
    for layer in (1, 2, 3):
        ours = feats.attention_probs(layer)
        theirs = reference.attentions[layer - 1]
        torch.testing.assert_close(ours * real, theirs * real, atol=1e-5, rtol=1e-4)
    q, k, v = feats.qkv[2]
    assert q.shape == k.shape == v.shape == (3, 4, 9, 8)


def test_scores_are_masked_and_match_under_sdpa():
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(CONFIGS["bert"]()).eval()
    assert model.config._attn_implementation == "sdpa"  # the hooks do not need eager attention
    batch = _batch()
    with FeatureTap(model, FeatureRequest(attention=frozenset({1}))) as tap, torch.no_grad():
        scores = tap.run(batch).scores[1]
    assert (scores[1, :, :, 6:] <= -100).all() and (scores[1, :, :, :6] > -100).all()


def test_only_requested_layers_are_hooked():
    model = AutoModelForSequenceClassification.from_config(CONFIGS["bert"]())
    tap = FeatureTap(model, FeatureRequest(hidden=frozenset({3})))
    assert len(tap._handles) == 1
    tap.close()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_layout_of_each_architecture():
    for arch, make in CONFIGS.items():
        layout = find_layout(AutoModelForSequenceClassification.from_config(make()))
        assert (layout.num_layers, layout.num_heads, layout.hidden_size) == (3, 4, 32), arch
