"""Running a fit under a deadline: in a forked child process that the parent kills when time is up.

scikit-learn fits spend their time in C loops (libsvm, the tree builders, BLAS) that no signal handler or flag
can interrupt, so the only way to end one cleanly at a deadline is to run it in another process. fork() hands
the child the loaded modules and the training matrix for free (copy-on-write) and a pipe brings the result
back. Lambda has no /dev/shm, which rules out multiprocessing's queues and joblib's process pools; a bare fork
and a pipe need neither. The child touches no S3 client, no log handler and not the parent's stdout (whose
lock another thread may have held at the fork): it computes, writes its result to the pipe and leaves with
os._exit. On Lambda a request runs alone in its process, so nothing else is running when it forks.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from mlservice.errors import ServiceError

T = TypeVar("T")
READ_BYTES = 1 << 20
OUT_OF_MEMORY = "the training ran out of memory; train on fewer rows or columns, or with a smaller model"


class ChildCrashed(RuntimeError):
    """The training process failed in a way that is a bug (its traceback is the message, for the logs)."""


def _timeout(seconds: float) -> ServiceError:
    return ServiceError(
        "training_timeout",
        f"the training did not finish within its {seconds:.0f} s deadline and was stopped; nothing was published. "
        "Train on fewer rows, or with a cheaper configuration (fewer estimators, iterations or folds)",
    )


def _child(task: Callable[[], Any], write_fd: int) -> None:
    code = 0
    try:
        try:
            # OpenMP's thread pool does not survive fork: a child of a process that already ran OpenMP threads
            # (kNN predictions served in the same process by `make run`) hangs in its first parallel region.
            # One thread is what a fit gets here anyway (n_jobs=1).
            from threadpoolctl import threadpool_limits

            threadpool_limits(1, user_api="openmp")
            payload: tuple[str, Any] = ("ok", task())
        except ServiceError as error:
            payload = ("service_error", (error.code, error.message))
        except MemoryError:
            payload = ("service_error", ("training_too_expensive", OUT_OF_MEMORY))
        except BaseException as error:  # reported to the parent, which logs it as a bug
            payload = ("crash", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"[-8000:])
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
    except BaseException:
        code = 1
    finally:
        os._exit(code)  # no atexit handlers, no finalizers of the parent's objects


def run(task: Callable[[], T], seconds: float, *, total: float | None = None) -> T:
    """`task()` in a child process, or 504 `training_timeout` once `seconds` have passed (the child is killed).

    `total` is the whole deadline, named in the message (the time left may be less after reading the data).
    """
    if seconds <= 0:
        raise _timeout(total or 0)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        _child(task, write_fd)
    os.close(write_fd)
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _timeout(total or seconds)
                ready, _, _ = select.select([pipe], [], [], remaining)
                if not ready:
                    continue
                chunk = pipe.read(READ_BYTES)
                if not chunk:
                    break
                chunks.append(chunk)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    if not chunks and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        # Not killed by us (that is the deadline, above): the kernel's out-of-memory killer picks the process
        # using the most memory, which is the fit. The request asked for more than the function holds.
        raise ServiceError("training_too_expensive", OUT_OF_MEMORY)
    if not chunks:
        raise ChildCrashed(f"the training process ended without a result (wait status {status})")
    kind, value = pickle.loads(b"".join(chunks))  # our own child's output, written just above
    if kind == "service_error":
        raise ServiceError(*value)
    if kind == "crash":
        raise ChildCrashed(value)
    return value
