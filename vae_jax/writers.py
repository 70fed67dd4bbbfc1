"""One metrics writer: JSON lines in the workdir and TensorBoard event files.

TensorBoard events are written with tensorboard's own record writer into a
plain file: clu's writer and tensorboard's EventFileWriter both import
TensorFlow (4 s at every start) to write the same bytes.
"""

import io
import json
import math
import os
import socket
import time

import numpy as np


def _jsonable(value):
  value = float(value)
  return value if math.isfinite(value) else str(value)  # JSON has no NaN/Inf


def atomic_write_text(path: str, text: str) -> None:
  """Writes via a temporary file and rename, so `path` is never half-written."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


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
    kept = [r for r in read_jsonl(self.path) if r["step"] <= resume_step]
    atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
    self._jsonl = open(self.path, "a")
    tb_dir = os.path.join(workdir, "tensorboard")
    os.makedirs(tb_dir, exist_ok=True)
    name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
    self._tb_file = open(os.path.join(tb_dir, name), "wb")
    self._tb = RecordWriter(self._tb_file)
    self._add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
    if resume_step:
      self._add_event(event_pb2.Event(
          wall_time=time.time(), step=resume_step,
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

  def _add_event(self, event) -> None:
    self._tb.write(event.SerializeToString())

  def write_scalars(self, step: int, scalars: dict[str, float], jsonl: bool = True) -> None:
    """One row per step in metrics.jsonl (jsonl=False: TensorBoard only)."""
    if jsonl:
      row = {"step": int(step), **{k: _jsonable(v) for k, v in scalars.items()}}
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
    self._jsonl.flush()
    self._tb.flush()

  def close(self) -> None:
    """Idempotent: the loop closes the writer on every way out."""
    if not self._jsonl.closed:
      self._jsonl.close()
      self._tb.close()
      self._tb_file.close()


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
