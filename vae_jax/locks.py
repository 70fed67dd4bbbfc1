"""One live run per workdir: a lock file holding who holds it.

`hold(workdir)` takes DIR/lock with `flock` and writes the holder's pid, host
and start time into it. flock rather than a pid check: the kernel drops the
lock the moment its holder dies, however (SIGKILL, a crash, power loss), so a
lock left by a dead run is simply free again, and a recycled pid can never
make a dead run look alive. Where flock is not supported (some network
filesystems), a lock naming a live pid on this host is honoured and any other
is taken over as stale.

Locks are re-entrant within a process (the sweep runner holds a member's lock
around the training that takes it again), and only the lead process of a
multi-process run takes one.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator

from vae_jax.errors import UserError
from vae_jax.writers import writing

LOCK_FILE = "lock"

_held: dict[str, list] = {}  # real path -> [file descriptor, depth]


def _holder(path: str) -> str:
  """'process 123 on host h (started ...)' from a lock file; any damage reads as unknown."""
  try:
    with open(path, "rb") as f:
      record = json.loads(f.read())
    return (f"process {int(record['pid'])} on host {record['host']} (started "
            f"{record['started']})")
  except (OSError, ValueError, TypeError, KeyError):
    return "another process (its lock file names none)"


def _alive_here(path: str) -> bool:
  """Without flock: does the lock name a live process on this host?"""
  try:
    with open(path, "rb") as f:
      record = json.loads(f.read())
    if record["host"] != socket.gethostname():
      return True  # cannot tell: honour it
    os.kill(int(record["pid"]), 0)
    return int(record["pid"]) != os.getpid()
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, owned by someone else
    return True
  except (OSError, ValueError, TypeError, KeyError):
    return False


def acquire(workdir: str) -> None:
  path = os.path.realpath(os.path.join(workdir, LOCK_FILE))
  if path in _held:
    _held[path][1] += 1
    return
  with writing(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS) or _alive_here(path):
      os.close(fd)
      raise UserError(f"workdir {workdir!r} is in use by {_holder(path)}; wait for that run "
                      "to end or stop it, or choose another --workdir") from None
  record = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
  try:
    with writing(path):
      os.ftruncate(fd, 0)
      os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
  except BaseException:
    os.close(fd)
    raise
  _held[path] = [fd, 1]


def release(workdir: str) -> None:
  path = os.path.realpath(os.path.join(workdir, LOCK_FILE))
  entry = _held.get(path)
  if entry is None:
    return
  entry[1] -= 1
  if entry[1] == 0:
    del _held[path]
    os.close(entry[0])  # closing drops the flock; the file stays (it is not the lock)


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds `workdir`'s lock inside; UserError (one line naming the holder) if
  a live run holds it. enabled=False (a non-lead process) takes none."""
  if not enabled:
    yield
    return
  acquire(workdir)
  try:
    yield
  finally:
    release(workdir)
