"""The one exception type that entry points turn into a single error line."""

import errno
import os


class UserError(Exception):
  """A mistake the user can fix (config, data, workdir, checkpoint).

  The message is one line that names the problem and the fix; scripts print it
  as `error: <message>` and exit with status 2, without a traceback.
  """


class Interrupted(Exception):
  """Training stopped by a signal after writing a checkpoint; resume by rerunning."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum


_PATH_CLASHES = tuple(os.strerror(e) for e in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST))


class WriteError(UserError):
  """A write that failed (disk full, quota, read-only): the path, why, and what
  is intact, as the one line every write path ends in."""

  def __init__(self, path: str, reason: str, intact: str | None = None):
    self.path, self.reason, self.intact = path, reason, intact
    # A file where a folder belongs (or the other way round) is not a full disk.
    fix = ("remove or rename what is in the way there" if reason in _PATH_CLASHES
           else "free disk space")
    super().__init__(f"could not write {path!r} ({reason}); "
                     f"{intact or 'nothing else was changed'}; {fix} or choose "
                     "another --workdir, then run the same command again")

  def with_intact(self, intact: str) -> "WriteError":
    """This error saying `intact`, unless whoever raised it knew better."""
    return self if self.intact else WriteError(self.path, self.reason, intact)
