"""The one exception type that entry points turn into a single error line."""


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
