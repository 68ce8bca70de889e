"""What the benchmarks share: running one measured case in a fresh process, statistics, context.

Every measured case runs in a child process of its own (``python -m benchmarks.<module> ...``),
so its peak RSS is its own (``os.wait4``), no state leaks from one run into the next, and
start-up is included where a target says so. The child prints one JSON line after
:data:`RESULT_MARKER`; :func:`run_case` returns it with the child's wall time and peak RSS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

RESULT_MARKER = "BENCHMARK-RESULT "
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class CaseRun:
    """One run of one case: what the child reported, its wall time and peak RSS."""

    result: dict
    wall_s: float
    peak_rss_mb: float


def run_case(module: str, *args: str, env: dict | None = None,
             timeout_s: float = 1800) -> CaseRun:
    """Runs ``python -m benchmarks.<module> ARGS`` and returns its result line, wall, peak RSS.

    Raises ``RuntimeError`` with the child's output when it fails or reports nothing.
    """
    command = [sys.executable, "-m", f"benchmarks.{module}", *args]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, **(env or {})}, text=True)
    try:
        out, err = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        raise RuntimeError(
            f"{' '.join(command)} timed out after {timeout_s} s:\n{err[-4000:]}") from None
    # communicate() has reaped the child; its rusage is in RUSAGE_CHILDREN only as a running
    # maximum over all children, so the child reports its own peak (see report()).
    wall = time.perf_counter() - started
    lines = [line for line in out.splitlines() if line.startswith(RESULT_MARKER)]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n"
                           f"{out[-2000:]}\n{err[-4000:]}")
    result = json.loads(lines[-1][len(RESULT_MARKER):])
    return CaseRun(result=result, wall_s=wall, peak_rss_mb=result.get("peak_rss_mb", 0.0))


def report(result: dict) -> None:
    """Prints the child's result line (with its own peak RSS) for :func:`run_case`."""
    print(RESULT_MARKER + json.dumps({**result, "peak_rss_mb": round(peak_rss_kb() / 1024, 1)},
                                     default=str), flush=True)


def peak_rss_kb() -> int:
    """This process's peak RSS in KiB: ``VmHWM``, the high-water mark of its own memory.

    Not ``ru_maxrss``: Linux carries the parent's RSS at fork over into the child's
    ``ru_maxrss`` across exec, so a child of a big parent (a sandbox holding 100k rows)
    would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclasses.dataclass(frozen=True)
class Spread:
    """min / median / max of ≥ 1 measurements."""

    low: float
    median: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no measurements")
        return cls(min(values), statistics.median(values), max(values))

    def text(self, digits: int = 2, unit: str = "") -> str:
        return (f"{self.low:.{digits}f} / {self.median:.{digits}f} / "
                f"{self.high:.{digits}f}{unit}")


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, Any]:
    """Where and when the benchmarks ran."""
    import apache_beam
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            names = [line.split(":", 1)[1].strip() for line in info
                     if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory_gb = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory_gb,
            "python": platform.python_version(), "beam": apache_beam.__version__,
            "os": f"{platform.system()} {platform.release()}"}


def customer_view(i: int, name: str = "customer", company: str = "Kunde") -> dict[str, Any]:
    """Generated customer ``i``'s canonical view (the customer pair's properties), its e-mail
    and company name made from ``name`` and ``company``: the benchmarks' one customer shape."""
    return {"email": f"{name}{i}@example.com", "company_name": f"{company} {i} AS",
            "vat_number": None, "phone": f"+47 {40000000 + i}",
            "address.line1": f"Storgata {i % 200 + 1}", "address.line2": None,
            "address.postal_code": f"{i % 9000 + 1000}", "address.city": "Oslo",
            "address.country": "NO"}


def machine_line(m: dict[str, Any]) -> str:
    """``Machine: AMD EPYC, 2 cores, 23.5 GB, Linux …, Python 3.11.7, Beam 2.78.0``: what
    :func:`machine` recorded, as the first words of each results section."""
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}, "
            f"Python {m['python']}, Beam {m['beam']}")


@contextlib.contextmanager
def workdir():
    """A fresh temporary folder for one measured case (sandbox state, link store, run files)."""
    with tempfile.TemporaryDirectory(prefix="talksync-bench-") as path:
        yield pathlib.Path(path)


def write_section(path: pathlib.Path, start: str, end: str, text: str) -> None:
    """Replaces what is between the markers ``start`` and ``end`` of ``path`` with ``text``
    (the markers are added at the end when missing); the rest of the file is kept."""
    current = path.read_text(encoding="utf-8") if path.exists() else f"{start}\n{end}\n"
    if start not in current or end not in current:
        current += f"\n{start}\n{end}\n"
    head, rest = current.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}", encoding="utf-8")


def quiet_logs() -> None:
    """Beam's and talksync's INFO lines off in a child (they would cost time and noise)."""
    import logging
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("talksync.progress").setLevel(logging.WARNING)
