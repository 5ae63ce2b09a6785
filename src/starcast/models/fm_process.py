"""Bayesian FMs fitted in a second Python process, in turn, while this one goes on.

myFM's sampler holds the GIL, so a thread would not run beside the caller's own fit. The
child is a fresh interpreter (`python -m starcast.models.fm_process DIR`), not a fork or a
multiprocessing spawn: a fork would inherit torch's thread pools, and a spawn re-imports
the caller's main script, which breaks any script without an `if __name__ == "__main__"`
guard. Arguments and answers travel as pickles in a temporary directory; each answer is
there as soon as its fit ends, so the caller can use the first while the child fits the next.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from starcast.errors import StarcastError
from starcast.models.bayesian_fm import FactorBase

FITS = ("fit", "fit_probit")  # the FactorBase constructors a child may run
POLL = 0.1  # seconds between looks for the next answer
Call = tuple[str, tuple]  # (FactorBase constructor, its arguments)


class Aside:
    """FactorBase fits running in turn in one child process; `result(i)` waits for the i-th."""

    def __init__(self, calls: Sequence[Call], folder: Path) -> None:
        for method, _ in calls:
            if method not in FITS:
                raise ValueError(f"not a FactorBase fit: {method!r} (one of {', '.join(FITS)})")
        self.folder = folder
        (folder / "in.pkl").write_bytes(pickle.dumps(list(calls)))
        # the child imports what this process imports, even from paths added at run time
        env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with open(folder / "log.txt", "wb") as log:
            self.child = subprocess.Popen([sys.executable, "-m", __name__, str(folder)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          env=env)

    def result(self, index: int = 0) -> FactorBase:
        """The `index`-th fitted FM; an error the child raised in that fit is raised here."""
        answer = self.folder / f"out{index}.pkl"
        while not answer.exists():
            try:
                status = self.child.wait(POLL)
            except subprocess.TimeoutExpired:
                continue
            if not answer.exists():  # (an answer may land just before the child ends)
                log = (self.folder / "log.txt").read_text(errors="replace").strip().splitlines()
                raise StarcastError(f"the FM's second process ended with exit status {status}"
                                    + (f": {log[-1]}" if log else ""))
        ok, value = pickle.loads(answer.read_bytes())
        if not ok:
            raise value
        return value


@contextlib.contextmanager
def aside(calls: Sequence[Call]) -> Iterator[Aside]:
    """`FactorBase.<method>(*args)` for each (method, args) in `calls`, in turn, in a child
    process; the child is stopped and its files removed when the block ends, answered or not."""
    folder = Path(tempfile.mkdtemp(prefix="starcast-fm-"))
    try:
        running = Aside(calls, folder)
        try:
            yield running
        finally:
            if running.child.poll() is None:
                running.child.kill()
                running.child.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _main(folder: Path) -> None:
    for index, (method, args) in enumerate(pickle.loads((folder / "in.pkl").read_bytes())):
        try:
            answer = (True, getattr(FactorBase, method)(*args))
        except Exception as error:  # handed to the parent, which raises it
            answer = (False, error)
        part = folder / f"part{index}.pkl"
        part.write_bytes(pickle.dumps(answer))
        part.rename(folder / f"out{index}.pkl")  # whole or absent, never half written


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
