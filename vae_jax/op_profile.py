"""Where a compiled program's time goes, op by op: jax.profiler's trace of a
few calls, summed per op. On a GPU the ops are its kernels, under the names
they were launched with (cuBLAS's and CUTLASS's included); on a CPU, XLA's
thunks. This is how the GPU sweep's kernels were weighed (README, "Measured").
"""

import collections
import glob
import gzip
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

import jax


def op_times(fn: Callable[[], Any], calls: int = 3) -> list[dict]:
  """Runs fn() `calls` times (it should block until its results are ready)
  under jax.profiler.trace and returns each op's time per call of fn, most
  first: {"module": the jitted program, "name", "count", "seconds"}. Where the
  trace has device events (a GPU's kernels) only those count, else the host's
  XLA thunks, but for a thunk that holds others (a loop's, which spans its
  body's). Kernels that ran at once (independent nodes of a CUDA graph) each
  count in full."""
  options = jax.profiler.ProfileOptions()
  options.python_tracer_level = 0  # Python's own frames are not ops
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp, create_perfetto_trace=True, profiler_options=options):
      for _ in range(calls):
        fn()
    paths = glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(max(paths, key=os.path.getmtime)) as f:
      trace = json.load(f)
  return summarize(trace, calls)


def summarize(trace: dict | list, calls: int = 1) -> list[dict]:
  """`op_times` of a loaded Chrome/Perfetto trace of `calls` calls."""
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  process = {e["pid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
  ops = [e for e in events if e.get("ph") == "X" and "hlo_module" in e.get("args", {})
         and not e["name"].startswith("end:")]
  on_device = [e for e in ops if process.get(e["pid"], "").startswith("/device:")]
  totals: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0, 0.0])
  for e in on_device or _innermost(ops):
    total = totals[(e["args"]["hlo_module"], e["name"])]
    total[0] += 1
    total[1] += e.get("dur", 0.0) * 1e-6  # microseconds in the trace
  rows = [{"module": module, "name": name, "count": n / calls, "seconds": s / calls}
          for (module, name), (n, s) in totals.items()]
  return sorted(rows, key=lambda r: -r["seconds"])


def per_unit(rows: list[dict], units: float, limit: int = 20) -> dict:
  """`op_times` rows divided by `units` (the steps or examples of a call):
  the `limit` slowest as "ops", and all of them summed as "total_seconds"."""
  return {"ops": [dict(r, count=r["count"] / units, seconds=r["seconds"] / units)
                  for r in rows[:limit]],
          "total_seconds": sum(r["seconds"] for r in rows) / units}


def _innermost(events: list[dict]) -> list[dict]:
  """The events that hold no other event of their thread: a loop's thunk spans
  its body's, which would otherwise count twice."""
  end = lambda e: e["ts"] + e.get("dur", 0.0)
  by_thread = collections.defaultdict(list)
  for e in events:
    by_thread[(e["pid"], e["tid"])].append(e)
  holders = set()
  for thread in by_thread.values():
    open_events: list[dict] = []  # each holding the next, outermost first
    for e in sorted(thread, key=lambda e: (e["ts"], -e.get("dur", 0.0))):
      while open_events and end(open_events[-1]) < end(e):  # ended, or only overlaps
        open_events.pop()
      if open_events:
        holders.add(id(open_events[-1]))
      open_events.append(e)
  return [e for e in events if id(e) not in holders]


def format_ops(profile: dict, unit: str = "call") -> str:
  """A `per_unit` profile as a table, under a line with the total per `unit`.
  On a CPU, XLA runs independent thunks at once on its threads, so the total
  can exceed the wall time."""
  lines = [f"  {1e6 * profile['total_seconds']:9.1f} us per {unit}, summed over its ops"]
  for r in profile["ops"]:
    lines.append(f"  {1e6 * r['seconds']:9.2f} us {r['count']:6.2f}x  {r['name'][:100]}")
  return "\n".join(lines)
