"""A Bayesian FM fitted in a second Python process, while this one goes on.

myFM's sampler holds the GIL, so a thread would not run beside the caller's own fit. The
child is a fresh interpreter (`python -m starcast.models.fm_process DIR`), not a fork or a
multiprocessing spawn: a fork would inherit torch's thread pools, and a spawn re-imports
the caller's main script, which breaks any script without an `if __name__ == "__main__"`
guard. Arguments and the answer travel as pickles in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from starcast.errors import StarcastError
from starcast.models.bayesian_fm import FactorBase

FITS = ("fit", "fit_probit")  # the FactorBase constructors a child may run


class Aside:
    """One FactorBase fit running in a child process; `result()` waits for it."""

    def __init__(self, method: str, args: tuple, folder: Path) -> None:
        if method not in FITS:
            raise ValueError(f"not a FactorBase fit: {method!r} (one of {', '.join(FITS)})")
        self.folder = folder
        (folder / "in.pkl").write_bytes(pickle.dumps((method, args)))
        # the child imports what this process imports, even from paths added at run time
        env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with open(folder / "log.txt", "wb") as log:
            self.child = subprocess.Popen([sys.executable, "-m", __name__, str(folder)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          env=env)

    def result(self) -> FactorBase:
        """The fitted FM; an error the child raised is raised here."""
        status = self.child.wait()
        answer = self.folder / "out.pkl"
        if not answer.exists():
            log = (self.folder / "log.txt").read_text(errors="replace").strip().splitlines()
            raise StarcastError(f"the FM's second process ended with exit status {status}"
                                + (f": {log[-1]}" if log else ""))
        ok, value = pickle.loads(answer.read_bytes())
        if not ok:
            raise value
        return value


@contextlib.contextmanager
def aside(method: str, *args) -> Iterator[Aside]:
    """`FactorBase.<method>(*args)` started in a child process; the child is stopped and its
    files removed when the block ends, answered or not."""
    folder = Path(tempfile.mkdtemp(prefix="starcast-fm-"))
    try:
        running = Aside(method, args, folder)
        try:
            yield running
        finally:
            if running.child.poll() is None:
                running.child.kill()
                running.child.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _main(folder: Path) -> None:
    method, args = pickle.loads((folder / "in.pkl").read_bytes())
    try:
        answer = (True, getattr(FactorBase, method)(*args))
    except Exception as error:  # handed to the parent, which raises it
        answer = (False, error)
    (folder / "part.pkl").write_bytes(pickle.dumps(answer))
    (folder / "part.pkl").rename(folder / "out.pkl")  # whole or absent, never half written


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
