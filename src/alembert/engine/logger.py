"""Every logged value goes to TensorBoard, a CSV file and memory (for the report's plots)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

HEADER = ["stage", "step", "key", "value"]  # metrics.csv


class RunLogger:
    """directory None: memory only (the processes of a distributed run other than the main one)."""

    def __init__(self, directory: Path | None):
        self.rows: list[dict] = []
        if directory is None:
            self._writer, self._csv_file = None, io.StringIO()
        else:
            directory.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(directory / "tensorboard"))
            self._csv_file = open(directory / "metrics.csv", "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(HEADER)

    def log(self, stage: str, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.rows.append({"stage": stage, "step": step, "key": key, "value": float(value)})
            self._write_row(self.rows[-1])
            if self._writer is not None:
                self._writer.add_scalar(f"{stage}/{key}", float(value), step)
        self._csv_file.flush()

    def restore(self, rows: list[dict]) -> None:
        """Continue a resumed run's log: its rows up to the checkpoint replace what this log holds. (TensorBoard
        keeps the interrupted run's events as well; steps logged after that checkpoint appear there twice.)"""
        self.rows = [dict(r) for r in rows]
        self._csv_file.seek(0)
        self._csv_file.truncate()
        self._csv.writerow(HEADER)
        for row in self.rows:
            self._write_row(row)
        self._csv_file.flush()

    def _write_row(self, row: dict) -> None:
        self._csv.writerow([row["stage"], row["step"], row["key"], f"{row['value']:.6g}"])

    def series(self, stage: str, key: str) -> tuple[list[int], list[float]]:
        points = [(r["step"], r["value"]) for r in self.rows if r["stage"] == stage and r["key"] == key]
        return [p[0] for p in points], [p[1] for p in points]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._csv_file.close()
