"""Progress lines for long work: one rewritten line on a terminal, plain lines in a log file.

On a terminal a progress line is rewritten in place (`\\r`); when output goes to a file or a
pipe (CI logs, `tee`, SLURM) that would glue hundreds of updates into one line, so there each
update is its own line, at most one every `LOG_INTERVAL` seconds.
"""

import sys
import time
from collections.abc import Callable
from typing import TextIO

LOG_INTERVAL = 10.0   # seconds between progress lines when the output is not a terminal


def duration(seconds: float) -> str:
    """'45 s', '12 min 5 s', '3 h 20 min', '4.5 days'."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class Line:
    """Writes progress updates to `stream`: rewritten in place on a terminal, else as lines."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self._last = float("-inf")

    def update(self, text: str, final: bool = False) -> None:
        now = time.time()
        if self.tty:
            print(f"\r{text}\033[K", end="\n" if final else "", file=self.stream, flush=True)
        elif final or now - self._last >= LOG_INTERVAL:
            print(text, file=self.stream, flush=True)
        else:
            return
        self._last = now


def printer(name: str, stream: TextIO | None = None) -> Callable[[int, int], None]:
    """`progress(done, total)` reporting 'name: done/total (elapsed, ETA)'."""
    start = time.time()
    line = Line(stream)

    def report(done: int, total: int) -> None:
        elapsed = time.time() - start
        eta = elapsed / max(done, 1) * (total - done)
        line.update(f"{name}: {done}/{total} ({duration(elapsed)}, ETA {duration(eta)})",
                    final=done >= total)
    return report


class TrainingProgress:
    """Speed and ETA of a training loop, measured without the time spent compiling.

    `compiling(seconds)` books compile time; `measure(done)` returns {'steps_per_sec',
    'images_per_sec'} since the previous call (one interval, so images/s = steps/s x batch),
    and prints 'step done/total (pct): x steps/s, y images/s, ETA ...'.
    """

    def __init__(self, start_step: int, total_steps: int, batch_size: int, stream: TextIO | None = None):
        self.total, self.batch = total_steps, batch_size
        self.stream = stream or sys.stdout
        self._step, self._time, self._compile = start_step, time.time(), 0.0

    def compiling(self, seconds: float) -> None:
        self._compile += seconds

    def measure(self, done: int) -> dict[str, float]:
        now = time.time()
        seconds = max(now - self._time - self._compile, 1e-9)
        steps_per_sec = (done - self._step) / seconds
        self._step, self._time, self._compile = done, now, 0.0
        eta = (self.total - done) / max(steps_per_sec, 1e-9)
        print(f"step {done}/{self.total} ({100 * done / self.total:.0f}%): {steps_per_sec:.3g} steps/s, "
              f"{steps_per_sec * self.batch:.3g} images/s, ETA {duration(eta)}",
              file=self.stream, flush=True)
        return {"steps_per_sec": steps_per_sec, "images_per_sec": steps_per_sec * self.batch}
