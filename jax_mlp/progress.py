"""What a run shows and records between compiled chunks: a progress bar or log lines, and metrics files."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path


class Progress:
    """A tqdm bar on a terminal ('bar'), or none ('none'): then log lines go to `log`."""

    def __init__(self, mode: str, total: int, initial: int = 0, log=lambda line: None):
        self.bar, self._log = None, log
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stdout)

    def log(self, line: str) -> None:
        """A line of text: above the bar when there is one, else to `log`."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            self._log(line)

    def advance(self, steps: int, loss: float, lr: float | None, steps_per_second: float) -> None:
        """After each chunk: move the bar and show the latest loss, rate and speed."""
        if self.bar is not None:
            post = {"loss": f"{loss:.4f}", "steps/s": f"{steps_per_second:,.0f}"}
            if lr is not None:
                post["lr"] = f"{lr:.3g}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class MetricsWriter:
    """metrics.jsonl (one object per log point) and, when tensorboardX is installed, TensorBoard events."""

    def __init__(self, out_dir: Path | None, keep_until: int | None = None):
        self.file = self.tb = None
        if out_dir is None:
            return
        kept = []
        path = out_dir / "metrics.jsonl"
        if keep_until is not None and path.exists():  # a resumed run: drop log points past the checkpoint
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= keep_until]
        self.file = open(path, "w")
        self.file.writelines(line + "\n" for line in kept)
        # tensorboardX takes ~1.5 s to import: do it beside compilation, not before it.
        self._tb_ready = threading.Thread(target=self._open_tb, args=(out_dir, keep_until), daemon=True)
        self._tb_ready.start()

    def _open_tb(self, out_dir: Path, keep_until: int | None) -> None:
        # tensorboardX imports PyTorch when it is installed (~1.4 s), only to accept torch
        # tensors, which we never log: hide it for the import, as if it were absent.
        hide = "torch" not in sys.modules
        if hide:
            sys.modules["torch"] = None
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            return
        finally:
            if hide and sys.modules.get("torch", 0) is None:
                del sys.modules["torch"]
        self.tb = SummaryWriter(str(out_dir / "tb"), purge_step=keep_until)

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        self._tb_ready.join()
        if self.tb is not None:
            step = record["step"]
            self.tb.add_scalar("loss/train", record["loss"], step)
            if record.get("dev_loss") is not None:
                self.tb.add_scalar("loss/dev", record["dev_loss"], step)
            if record.get("learning_rate") is not None:
                self.tb.add_scalar("learning_rate", record["learning_rate"], step)
            self.tb.add_scalar("steps_per_second", record["steps_per_second"], step)
            self.tb.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self._tb_ready.join()
        if self.tb is not None:
            self.tb.close()
