"""Helper processes (fork server, pool workers) end with the `census run` that started them.

`watch_run()` in the parent records its pid in the environment that helpers inherit. A helper
whose parent is that pid (the fork server) asks Linux to SIGKILL it when
the parent dies (prctl PR_SET_PDEATHSIG); a pool worker, whose parent is the fork server, does
the same via `worker_dies_with_fork_server()`, so the chain run -> fork server -> worker ends as a whole even
after a SIGKILL of the run. Importing this module in a helper (the fork server preloads it) is
what arms it there.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

RUN_PID = "CENSUS_RUN_PID"
FORK_SERVER_PID = "CENSUS_FORK_SERVER_PID"  # set in the fork server, so its children know their parent
_PR_SET_PDEATHSIG = 1


def watch_run() -> None:
    """Mark this process as the run whose helpers must end with it."""
    os.environ[RUN_PID] = str(os.getpid())


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent dies; exit now if the parent is already gone."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != expected_parent:  # the parent died before the request took effect
        os._exit(1)


def _arm_if_child_of_run() -> None:
    run_pid = os.environ.get(RUN_PID)
    if run_pid and os.getppid() == int(run_pid):
        die_with_parent(int(run_pid))
        os.environ[FORK_SERVER_PID] = str(os.getpid())


def worker_dies_with_fork_server() -> None:
    """In a pool worker: end with the fork server (which ends with the run), even if it is gone already."""
    fork_server = os.environ.get(FORK_SERVER_PID)
    if fork_server:
        die_with_parent(int(fork_server))


_arm_if_child_of_run()
