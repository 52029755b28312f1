"""ONNX export: fp32 matches PyTorch on padded batches, int8 loads and mostly agrees, bad input is one line."""
import json

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertForSequenceClassification

from alembert.cli import main
from alembert.errors import AlembertError
from alembert.export import export_onnx, make_session
from conftest import WORDS, tiny_bert, write_tokenizer

TEXTS = ["good", "the movie was very good and the actor was great", "bad film", "it is not a fine plot , awful",
         "the film"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny BERT classifier exported once (fp32 and int8) into its default folder, <model>/onnx."""
    folder = tmp_path_factory.mktemp("export") / "model"
    tiny_bert(layers=2).eval().save_pretrained(folder)
    write_tokenizer(folder)
    return folder, export_onnx(folder, int8=True)


def _padded_batch(folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # mixed lengths, so some rows are padded
    return batch


def _onnx_logits(path, batch):
    session = make_session(path, threads=1)
    return session.run(["logits"], {i.name: batch[i.name].numpy() for i in session.get_inputs()})[0]


def test_fp32_matches_pytorch_on_padded_batches(exported):
    folder, info = exported
    assert info["fp32"]["max_abs_diff"] <= 1e-4 and info["fp32"]["bytes"] > 0
    assert info["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    model = tiny_bert(layers=2).eval()  # same seed, same weights as the saved one
    batch = _padded_batch(folder)
    with torch.no_grad():
        reference = model(**batch).logits.numpy()
    got = _onnx_logits(folder / "onnx" / "model.onnx", batch)
    assert got.shape == reference.shape
    assert np.abs(got - reference).max() <= 1e-4
    # the folder serves alone: tokenizer and config were copied next to the model
    assert {"config.json", "tokenizer.json", "model.onnx", "model.int8.onnx"} <= {
        p.name for p in (folder / "onnx").iterdir()}


def test_int8_loads_and_mostly_agrees(exported):
    folder, info = exported
    int8 = folder / "onnx" / "model.int8.onnx"
    assert info["int8"]["bytes"] == int8.stat().st_size < info["fp32"]["bytes"]
    assert info["int8"]["argmax_agreement"] >= 0.8 and info["int8"]["max_abs_diff"] >= 0
    batch = _padded_batch(folder)
    fp32, quantized = _onnx_logits(folder / "onnx" / "model.onnx", batch), _onnx_logits(int8, batch)
    assert quantized.shape == fp32.shape
    assert (quantized.argmax(-1) == fp32.argmax(-1)).mean() >= 0.8


def test_missing_directory(tmp_path):
    with pytest.raises(AlembertError, match="no such directory"):
        export_onnx(tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_classifier(tmp_path):
    BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "encoder")
    with pytest.raises(AlembertError, match="ForSequenceClassification"):
        export_onnx(tmp_path / "encoder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlembertError, match="no config.json"):
        export_onnx(tmp_path / "empty")


def test_unwritable_output(exported, tmp_path):
    folder, _ = exported
    (tmp_path / "file").write_text("x")
    with pytest.raises(AlembertError, match=r"output .*file.*cannot write"):
        export_onnx(folder, tmp_path / "file" / "onnx")


def test_cli_export_model_without_token_types(tmp_path, capsys):
    """DistilBERT has no token_type_ids input; the CLI prints the summary as JSON."""
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(WORDS) + 5, dim=32, n_layers=1, n_heads=4, hidden_dim=64, max_position_embeddings=64))
    model.save_pretrained(tmp_path / "distil")
    write_tokenizer(tmp_path / "distil")
    assert main(["export", str(tmp_path / "distil"), "--onnx", "--output", str(tmp_path / "out"),
                 "--max-length", "32"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"] == ["input_ids", "attention_mask"] and info["fp32"]["max_abs_diff"] <= 1e-4
    assert "int8" not in info and (tmp_path / "out" / "model.onnx").is_file()


def test_cli_export_missing_model(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["export", str(missing), "--onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and err.startswith("alembert: error:")


# --- the output folder: another model's files are never overwritten silently (issue 21, case 1) -------------------

def _tiny_distil(folder, layers=1, seed=0):
    torch.manual_seed(seed)
    DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(WORDS) + 5, dim=32, n_layers=layers, n_heads=4, hidden_dim=64, max_position_embeddings=64)
    ).save_pretrained(folder)
    write_tokenizer(folder)
    return folder


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_an_earlier_export_of_the_model_is_replaced_and_another_models_folder_refused(tmp_path):
    model, other, out = _tiny_distil(tmp_path / "m"), _tiny_distil(tmp_path / "o", layers=2, seed=1), tmp_path / "out"
    first = export_onnx(model, out, int8=True)
    assert "replaced" not in first
    assert json.loads((out / "export.json").read_text())["source"] == str(model.resolve())
    again = export_onnx(model, out)  # the same model again, without int8: its old int8 file would be stale
    assert again["replaced"] == ["export.json", "model.onnx"] and again["removed"] == ["model.int8.onnx"]
    assert not (out / "model.int8.onnx").exists()
    before = _files(out)
    with pytest.raises(AlembertError, match=r"output .*out: holds files exported from another model \(.*m\) "
                                            r"\(config.json, export.json, model.onnx\)"):
        export_onnx(other, out)
    assert _files(out) == before and [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    replaced = export_onnx(other, out, overwrite=True)["replaced"]
    assert replaced == ["config.json", "export.json", "model.onnx"]
    assert json.loads((out / "config.json").read_text())["n_layers"] == 2


def test_export_into_the_models_own_folder_writes_only_onnx_files(tmp_path):
    model = _tiny_distil(tmp_path / "m")
    before = _files(model)
    export_onnx(model, model)
    after = _files(model)
    assert set(after) - set(before) == {"model.onnx", "export.json"}
    assert all(after[name] == data for name, data in before.items())
