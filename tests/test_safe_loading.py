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
