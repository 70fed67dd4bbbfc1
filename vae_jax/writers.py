"""One metrics writer: JSON lines in the workdir and TensorBoard event files.

TensorBoard events are written with tensorboard's own record writer into a
plain file: clu's writer and tensorboard's EventFileWriter both import
TensorFlow (4 s at every start) to write the same bytes.
"""

import contextlib
import errno
import io
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Iterator

import numpy as np

from vae_jax.errors import UserError, WriteError

# What a write fails with when the disk, quota or mount refuses it; libraries
# (tensorstore under orbax) may say it only in a message, not as an OSError.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                 errno.EIO, errno.EFBIG)


def _jsonable(value):
  value = float(value)
  return value if math.isfinite(value) else str(value)  # JSON has no NaN/Inf


def write_failure(error: BaseException) -> str | None:
  """Why a write failed ('No space left on device'), found in `error` or the
  errors behind it; None if it is not a failed write (a bug: let it show)."""
  if isinstance(error, UserError) and not isinstance(error, WriteError):
    return None  # already its own one line
  seen, todo = set(), [error]
  while todo:
    e = todo.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    if isinstance(e, WriteError):
      return e.reason
    if isinstance(e, OSError):
      return e.strerror or str(e) or type(e).__name__
    text = str(e)
    for code in _WRITE_ERRNOS:
      if os.strerror(code) in text:
        return os.strerror(code)
    todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
  return None


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
  """A failed write inside becomes the one-line WriteError naming `path`."""
  try:
    yield
  except WriteError:
    raise
  except Exception as e:
    reason = write_failure(e)
    if reason is None:
      raise
    raise WriteError(path, reason) from e


def atomic_write_text(path: str, text: str) -> None:
  """Writes via a temporary file and rename, so `path` is never half-written."""
  tmp = f"{path}.tmp"
  with writing(path):
    try:
      with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    except BaseException:
      with contextlib.suppress(OSError):  # our own partial temporary, never `path`
        os.remove(tmp)
      raise


def set_aside(path: str) -> str:
  """Moves a damaged file to `path.damaged-<time>` (kept, never deleted); returns where."""
  aside = f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
  with writing(aside):
    os.replace(path, aside)
  return aside


def read_jsonl_rows(path: str) -> tuple[list[dict], int]:
  """(the rows of a metrics file, the number of damaged lines skipped). A row
  is a JSON object with an integer 'step'; a torn last line (a kill mid-write)
  or flipped bytes make a line damaged."""
  if not os.path.exists(path):
    return [], 0
  rows, bad = [], 0
  with open(path, "rb") as f:
    for line in f:
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except ValueError:  # not JSON, or not UTF-8
        bad += 1
        continue
      if isinstance(row, dict) and isinstance(row.get("step"), int):
        rows.append(row)
      else:
        bad += 1
  return rows, bad


def read_jsonl(path: str) -> list[dict]:
  """The good rows of a metrics file; damaged lines are skipped with a warning."""
  rows, bad = read_jsonl_rows(path)
  if bad:
    warnings.warn(f"{path}: skipped {bad} damaged line(s)", stacklevel=2)
  return rows


class MetricWriter:
  """Appends {'step', ...scalars} rows to metrics.jsonl and TensorBoard.

  On resume from `resume_step`, rows after it are dropped from the JSONL file
  and TensorBoard is told to purge its later events, so no step appears twice.
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    self.path = os.path.join(workdir, "metrics.jsonl")
    rows, bad = read_jsonl_rows(self.path)
    if bad:  # the damaged original is kept beside the rewritten file
      warnings.warn(f"{self.path}: {bad} damaged line(s) dropped; the original is kept as "
                    f"{set_aside(self.path)}", stacklevel=2)
    kept = [r for r in rows if r["step"] <= resume_step]
    atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
    with writing(self.path):
      self._jsonl = open(self.path, "a")
    tb_dir = os.path.join(workdir, "tensorboard")
    name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
    self.tb_path = os.path.join(tb_dir, name)
    with writing(self.tb_path):
      os.makedirs(tb_dir, exist_ok=True)
      self._tb_file = open(self.tb_path, "wb")
    self._tb = RecordWriter(self._tb_file)
    self._add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
    if resume_step:  # TensorBoard drops the events at and after the marker's step
      self._add_event(event_pb2.Event(
          wall_time=time.time(), step=resume_step + 1,
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

  def _add_event(self, event) -> None:
    with writing(self.tb_path):
      self._tb.write(event.SerializeToString())

  def write_scalars(self, step: int, scalars: dict[str, float], jsonl: bool = True) -> None:
    """One row per step in metrics.jsonl (jsonl=False: TensorBoard only)."""
    if jsonl:
      row = {"step": int(step), **{k: _jsonable(v) for k, v in scalars.items()}}
      with writing(self.path):
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
    values = [self._summary_pb2.Summary.Value(tag=k, simple_value=float(v))
              for k, v in scalars.items()]
    self._add_event(self._event_pb2.Event(
        wall_time=time.time(), step=int(step), summary=self._summary_pb2.Summary(value=values)))

  def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
    """images: name -> (H, W) or (H, W, 3) uint8 array."""
    from PIL import Image  # matplotlib's own dependency
    values = []
    for name, array in images.items():
      buf = io.BytesIO()
      Image.fromarray(array).save(buf, format="PNG")
      img = self._summary_pb2.Summary.Image(
          height=array.shape[0], width=array.shape[1],
          colorspace=1 if array.ndim == 2 else 3, encoded_image_string=buf.getvalue())
      values.append(self._summary_pb2.Summary.Value(tag=name, image=img))
    self._add_event(self._event_pb2.Event(
        wall_time=time.time(), step=int(step), summary=self._summary_pb2.Summary(value=values)))

  def flush(self) -> None:
    with writing(self.path):
      self._jsonl.flush()
    with writing(self.tb_path):
      self._tb.flush()

  def close(self) -> None:
    """Idempotent: the loop closes the writer on every way out. Every file is
    closed even when one fails to (a full disk); then the first failure is raised."""
    if self._jsonl.closed:
      return
    failures = []
    for path, close in ((self.path, self._jsonl.close), (self.tb_path, self._tb.close),
                        (self.tb_path, self._tb_file.close)):
      try:
        with writing(path):
          close()
      except WriteError as e:
        failures.append(e)
    if failures:
      raise failures[0]


class NullWriter:
  """What the processes other than process 0 of a multi-process run write: nothing."""

  def write_scalars(self, step: int, scalars: dict, jsonl: bool = True) -> None:
    del step, scalars, jsonl

  def write_images(self, step: int, images: dict) -> None:
    del step, images

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass
