"""Tiny randomly initialised configs of every encoder family alembert supports (no download), for the tests."""
from transformers import (AlbertConfig, BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, ModernBertConfig,
                          MPNetConfig, RobertaConfig, XLMRobertaConfig)

VOCAB = 99
_SIZES = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
_DEBERTA = dict(_SIZES, relative_attention=True, position_buckets=8, max_relative_positions=16,
                pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", position_biased_input=False)

FAMILIES = {
    "bert": lambda: BertConfig(**_SIZES),
    "roberta": lambda: RobertaConfig(**_SIZES, pad_token_id=1),
    "xlm-roberta": lambda: XLMRobertaConfig(**_SIZES, pad_token_id=1),
    "electra": lambda: ElectraConfig(**_SIZES, embedding_size=8),
    "distilbert": lambda: DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=3, n_heads=4, hidden_dim=64),
    "mpnet": lambda: MPNetConfig(**_SIZES),
    # DeBERTa-v3's settings: shared attention keys, relative embeddings normalised, no absolute positions
    "deberta-v3": lambda: DebertaV2Config(**_DEBERTA, share_att_key=True),
    # DeBERTa-v2-xlarge's: separate position projections, a convolution after the first layer, a narrower embedding
    "deberta-v2": lambda: DebertaV2Config(**_DEBERTA, share_att_key=False, conv_kernel_size=3, embedding_size=12),
    "albert": lambda: AlbertConfig(**_SIZES, embedding_size=16),
    # a short local window, so the 9-token test batch has tokens outside it
    "modernbert": lambda: ModernBertConfig(**_SIZES, global_attn_every_n_layers=2, local_attention=4, pad_token_id=0,
                                           bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3),
}
