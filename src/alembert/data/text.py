"""Unlabeled sentences from text files, indexed once and tokenized shard by shard as batches need them.

A .txt file (running text, the large-corpus format) is indexed by the byte offset of each line and the number of
sentences it holds; a shard's lines are read back from disk when a batch first needs one of its examples, and
only the two most recent shards stay tokenized. So a corpus never sits tokenized in memory, nor as text: the index
costs 16 bytes a sentence. A .tsv/.csv file (a text or sentence column, e.g. reviews) is parsed once with the
table reader and its sentences are held as text (tables are the small-corpus format), tokenized the same way.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from alembert.data.encoded import EncodedExamples, Tokenizers
from alembert.errors import AlembertError
from alembert.tasks import Example
from alembert.tasks.supplementary import TEXT_COLUMNS, _read_delimited, split_sentences

KEEP_SHARDS = 2


class TextCorpus(Dataset):
    """`files`: paths to .txt/.tsv/.csv; `limit`: a seeded sample of that many sentences (in file order)."""

    def __init__(self, files: list[Path], tokenizers: Tokenizers, min_words: int = 5, shard_size: int = 4096,
                 limit: int | None = None, seed: int = 0):
        self.files, self.tokenizers, self.min_words, self.shard_size = list(files), tokenizers, min_words, shard_size
        self.tables: dict[int, list[str]] = {}  # file number -> sentences, for .tsv/.csv
        file_ids, offsets, positions, chars = [], [], [], []
        for f, path in enumerate(self.files):
            if path.suffix.lower() == ".txt":
                self._index_lines(f, path, file_ids, offsets, positions, chars)
            else:
                sentences = self._table_sentences(path)
                self.tables[f] = sentences
                file_ids += [f] * len(sentences)
                offsets += list(range(len(sentences)))
                positions += [0] * len(sentences)
                chars += [len(s) for s in sentences]
        if not file_ids:
            raise AlembertError(f"{', '.join(map(str, self.files))}: no sentences of at least {min_words} words, "
                                "expected running text")
        keep = np.arange(len(file_ids))
        if limit is not None and limit < len(keep):
            keep = np.sort(np.random.default_rng(seed).choice(len(keep), size=limit, replace=False))
        self.file_id = np.asarray(file_ids, dtype=np.int32)[keep]
        self.offset = np.asarray(offsets, dtype=np.int64)[keep]
        self.position = np.asarray(positions, dtype=np.int32)[keep]
        self.chars = np.asarray(chars, dtype=np.int32)[keep]
        self._loaded: OrderedDict[int, EncodedExamples] = OrderedDict()

    def _index_lines(self, f: int, path: Path, file_ids, offsets, positions, chars) -> None:
        try:
            with open(path, "rb") as handle:
                offset = 0
                for number, raw in enumerate(handle, start=1):
                    try:
                        line = raw.decode("utf-8-sig" if offset == 0 else "utf-8")
                    except UnicodeDecodeError:
                        raise AlembertError(f"{path}, line {number}: cannot decode the line, expected UTF-8") from None
                    for k, sentence in enumerate(split_sentences(line, self.min_words)):
                        file_ids.append(f)
                        offsets.append(offset)
                        positions.append(k)
                        chars.append(len(sentence))
                    offset += len(raw)
        except OSError as err:
            raise AlembertError(f"{path}: cannot read ({err.strerror})") from None

    def _table_sentences(self, path: Path) -> list[str]:
        records = _read_delimited(path)
        found = list(records[0][1])
        column = next((c for c in TEXT_COLUMNS if c in found), None)
        if column is None:
            raise AlembertError(f"{path}: no column 'text' or 'sentence' (columns: {', '.join(found)})")
        return [s for _, fields in records for s in split_sentences(fields[column], self.min_words)]

    def __len__(self):
        return len(self.file_id)

    @property
    def shards(self) -> list[range]:
        return [range(a, min(a + self.shard_size, len(self))) for a in range(0, len(self), self.shard_size)]

    @property
    def lengths(self) -> list[int]:
        """Approximate token counts (characters / 4) for length-grouped batches, known without tokenizing."""
        return (self.chars // 4 + 2).tolist()

    @property
    def domain_ids(self) -> list[int]:
        return [0] * len(self)

    @property
    def labels(self) -> list:
        return [None] * len(self)

    def texts(self, rows: range) -> list[str]:
        """The sentences at `rows`, read from their files."""
        out, lines = [], {}
        for i in rows:
            f, offset, k = int(self.file_id[i]), int(self.offset[i]), int(self.position[i])
            if f in self.tables:
                out.append(self.tables[f][offset])
                continue
            if (f, offset) not in lines:
                with open(self.files[f], "rb") as handle:
                    handle.seek(offset)
                    lines[f, offset] = split_sentences(handle.readline().decode("utf-8-sig"), self.min_words)
            out.append(lines[f, offset][k])
        return out

    def encoded_shard(self, j: int) -> EncodedExamples:
        """Shard j's examples, tokenized (the two most recent shards are kept)."""
        if j in self._loaded:
            self._loaded.move_to_end(j)
            return self._loaded[j]
        shard = EncodedExamples([Example(t, None, None) for t in self.texts(self.shards[j])], self.tokenizers, 0)
        self._loaded[j] = shard
        while len(self._loaded) > KEEP_SHARDS:
            self._loaded.popitem(last=False)
        return shard

    def __getitem__(self, i: int) -> dict:
        j = i // self.shard_size
        return dict(self.encoded_shard(j)[i - j * self.shard_size], id=i)

    def __getstate__(self):  # worker processes and deep copies start without tokenized shards
        return dict(self.__dict__, _loaded=OrderedDict())
