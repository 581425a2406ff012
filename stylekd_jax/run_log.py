"""A run's records for reports: its scalars in `WORKDIR/metrics.jsonl` (beside TensorBoard's)
and the wall time of a workdir's stages in `WORKDIR/stages.json` (StageLog).

Why: reports and quick scripts need the loss curves and final metrics without parsing
TensorBoard event files. The trainer writes through clu's MultiWriter to both, so this is
the same data TensorBoard shows. Each `write_scalars` call appends one line
`{"step": S, "time": UNIX_SECONDS, "scalars": {...}}`; a resumed run re-logs the steps after
its last checkpoint, and `read_scalars` keeps the last value written for each (name, step).
"""

import json
import math
import os
import time
from typing import Any, Mapping

import jax

FILE_NAME = "metrics.jsonl"
STAGES_FILE = "stages.json"


class JsonlWriter:
    """Appends scalars to a JSON-lines file (other kinds are ignored).

    It has every method of clu's `MetricWriter`, so clu's `MultiWriter` takes it, without
    subclassing it: this module imports without clu (and so without TensorFlow).
    """

    def __init__(self, workdir: str):
        os.makedirs(workdir, exist_ok=True)
        self._file = open(os.path.join(workdir, FILE_NAME), "a")

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        values = {k: float(v) for k, v in scalars.items()}
        line = {"step": int(step), "time": time.time(),
                "scalars": {k: (v if math.isfinite(v) else None) for k, v in values.items()}}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def write_summaries(self, step, values, metadata=None):
        pass

    def write_images(self, step, images):
        pass

    def write_videos(self, step, videos):
        pass

    def write_audios(self, step, audios, *, sample_rate):
        pass

    def write_texts(self, step, texts):
        pass

    def write_histograms(self, step, arrays, num_buckets=None):
        pass

    def write_hparams(self, hparams):
        pass

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_scalars(workdir: str) -> dict[str, tuple[list[int], list[float]]]:
    """{name: (steps, values)} sorted by step; None (non-finite) values are NaN. {} if no log."""
    path = os.path.join(workdir, FILE_NAME)
    if not os.path.isfile(path):
        return {}
    latest: dict[str, dict[int, float]] = {}
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:   # a line cut by a kill mid-write
                continue
            for name, value in record["scalars"].items():
                latest.setdefault(name, {})[record["step"]] = math.nan if value is None else value
    return {name: (sorted(by_step), [by_step[s] for s in sorted(by_step)])
            for name, by_step in latest.items()}


def last_value(scalars: dict, name: str) -> float | None:
    """The value at the highest step of `name`, or None when it was never logged."""
    if name not in scalars:
        return None
    return scalars[name][1][-1]


class StageLog:
    """Wall time of each stage that did work, kept across reruns in WORKDIR/stages.json as
    {stage: {"seconds": S, "run": run dir relative to WORKDIR or null}}."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, STAGES_FILE)
        self.stages = {}
        if os.path.isfile(self.path):
            with open(self.path) as f:
                self.stages = json.load(f)

    def record(self, name: str, seconds: float, run_dir: str | None = None) -> None:
        if jax.process_index() != 0:
            return
        run = None if run_dir is None else os.path.relpath(run_dir, self.workdir)
        self.stages[name] = {"seconds": round(seconds, 1), "run": run}
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.stages, f, indent=2)
        os.replace(self.path + ".tmp", self.path)
