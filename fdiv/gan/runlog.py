"""The run log of a GAN run: ``metrics.jsonl``, ``eval.jsonl``, ``evaluation.json``, TensorBoard
events (when TensorBoard is installed) and the progress display (rank 0 only).

A resumed run first drops the records past its checkpoint's step, so the log always describes
exactly the steps that the weights went through; only then is ``config.json`` written, so a run
whose log cannot be read is left untouched. An evaluation's ``eval.jsonl`` record is written
last, after ``evaluation.json`` and the plots: a step with a record was evaluated completely.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fdiv.io import write_json, write_text
from fdiv.progress import progress

__all__ = ["RunLog"]


class RunLog:
    """metrics.jsonl / eval.jsonl, the progress display and TensorBoard (rank 0 only)."""

    def __init__(
        self, run_dir: Path, start: int, total: int, active: bool, config: dict[str, Any]
    ) -> None:
        """Open the log of a run at step ``start`` (of ``total``) and write its ``config``."""
        self.run_dir, self.active = run_dir, active
        #: The steps with a complete evaluation in eval.jsonl (up to ``start``).
        self.evaluated: set[int] = set()
        if active:
            _truncate_after(run_dir / "metrics.jsonl", start)
            self.evaluated = {r["step"] for r in _truncate_after(run_dir / "eval.jsonl", start)}
            write_json(run_dir / "config.json", config)
        self.writer = _tensorboard(run_dir) if active else None
        self.started = time.perf_counter()
        self.bar = progress(total, "train", enabled=active, initial=start, unit="step")

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.run_dir / name, "a") as out:
            out.write(json.dumps(record) + "\n")

    def metrics(self, step: int, values: dict[str, float]) -> None:
        """Log the training metrics of ``step`` and advance the progress display to it."""
        if not self.active:
            return
        seconds = time.perf_counter() - self.started
        self._append("metrics.jsonl", {"step": step, **values, "seconds": seconds})
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"train/{key}", value, step)
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(
            D=f"{values['critic_loss']:+.4f}", G=f"{values['generator_loss']:+.4f}", refresh=False
        )

    def evaluation(self, step: int, values: dict[str, float]) -> None:
        """Log the sample-quality metrics of ``step`` (evaluation.json, then eval.jsonl)."""
        write_json(self.run_dir / "evaluation.json", {"step": step, **values})
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"eval/{key}", value, step)
        self._append("eval.jsonl", {"step": step, **values})
        self.evaluated.add(step)


def _tensorboard(run_dir: Path) -> Any:
    """A TensorBoard SummaryWriter when TensorBoard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir))


def _truncate_after(path: Path, step: int) -> list[dict[str, Any]]:
    """Drop the records of ``path`` (JSON lines) past ``step``: a resumed run rewrites them.

    Returns the records kept. The file is replaced atomically (a kill leaves the old or the new
    file). A torn last line (a write cut short by a kill) is dropped; an unreadable line
    elsewhere is a ValueError naming the file and the line, raised before anything is written.
    """
    if not path.exists():
        return []
    try:
        lines = path.read_text().splitlines(keepends=True)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text log of JSON records") from None
    kept, records = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # torn by a kill mid-write: that step is redone
            raise ValueError(f"{path}: line {number} is not a JSON record") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ValueError(f"{path}: line {number} is not a record with an integer step")
        if record["step"] <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
            records.append(record)
    if kept != lines:
        write_text(path, "".join(kept))
    return records
