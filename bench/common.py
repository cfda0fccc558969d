"""What every benchmark shares: the machine, medians, timing, and Markdown tables."""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "crossplane-function-sdk-python",
    "grpcio",
    "protobuf",
    "pydantic",
)


# -- the machine ------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def protobuf_backend() -> str:
    try:
        from google.protobuf.internal import api_implementation

        return api_implementation.Type()
    except Exception:  # pragma: no cover - only informative
        return "?"


def commit() -> str:
    """The checked-out commit (read-only git), plus a note that the tree may differ."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except Exception:
        return "?"


def source_state() -> str:
    """Which code was measured: a digest of function/**/*.py and the files that differ
    from HEAD (read-only git: ls-tree and hash-object without -w)."""
    import hashlib

    files = sorted((ROOT / "function").rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    try:
        tree = subprocess.run(
            ["git", "ls-tree", "-r", "HEAD", "function"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        head = {line.split("\t", 1)[1]: line.split()[2] for line in tree.splitlines()}
        names = [p.relative_to(ROOT).as_posix() for p in files]
        blobs = subprocess.run(
            ["git", "hash-object", "--", *names],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
        changed = [
            n.removeprefix("function/") + ("" if n in head else " (new)")
            for n, b in zip(names, blobs, strict=True)
            if head.get(n) != b
        ]
        gone = [
            n.removeprefix("function/") + " (deleted)"
            for n in head
            if n.endswith(".py") and not (ROOT / n).exists()
        ]
        delta = ", ".join(changed + gone) or "none"
    except Exception:
        delta = "?"
    return f"sha256 {digest.hexdigest()[:12]}; differs from HEAD in: {delta}"


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine_line() -> str:
    """One line printed above every table."""
    return (
        f"machine: {cores()} cores ({cpu_model()}), Python {platform.python_version()}, "
        f"protobuf {versions()['protobuf']} ({protobuf_backend()}), "
        f"grpcio {versions()['grpcio']}"
    )


def machine_markdown(measured: str | None = None, head: str | None = None) -> str:
    rows = [
        ("cores", str(cores())),
        ("CPU", cpu_model()),
        ("memory", _memory()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("protobuf backend", protobuf_backend()),
        *((name, version) for name, version in versions().items()),
        ("commit (HEAD at start)", head or commit()),
        ("function/ measured", measured or source_state()),
    ]
    return table(["", ""], rows)


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    return "?"


# -- numbers ----------------------------------------------------------------------------


def median(values) -> float:
    return statistics.median(values)


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def fmt_bytes(n: float) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.2f} MiB"
    if n >= 10 * 1024:
        return f"{n / 1024:.0f} KiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n:.0f} B"


def verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


@dataclass(frozen=True)
class Timing:
    """Medians of one measurement: thread CPU time (what the code costs, unaffected by
    other processes on a shared machine) and wall time."""

    cpu: float
    wall: float


def time_handler(runner, request, *, repeats: int, min_seconds: float = 0.05) -> Timing:
    """Median time of `await runner.RunFunction(request, None)` alone, measured inside one
    running event loop (so neither loop start-up nor request building is counted)."""

    async def measure() -> tuple[list[float], list[float]]:
        cpu: list[float] = []
        wall: list[float] = []
        started = time.perf_counter()
        while len(cpu) < repeats or time.perf_counter() - started < min_seconds:
            c0, t0 = time.thread_time(), time.perf_counter()
            await runner.RunFunction(request, None)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
            if len(cpu) >= repeats * 20:
                break
        return cpu, wall

    gc.collect()
    cpu, wall = _loop().run_until_complete(measure())
    return Timing(median(cpu), median(wall))


def time_interleaved(
    jobs: list[tuple[object, object]], *, rounds: int, per_round: int = 3, warm: bool = True
) -> list[Timing]:
    """Median handler times of several (runner, request) jobs, measured round-robin:
    each round runs every job `per_round` times. Interleaving spreads whatever else the
    machine does evenly over the jobs, so their ratios stay fair on shared cores."""
    cpu: list[list[float]] = [[] for _ in jobs]
    wall: list[list[float]] = [[] for _ in jobs]

    async def one_round() -> None:
        for i, (runner, request) in enumerate(jobs):
            for _ in range(per_round):
                c0, t0 = time.thread_time(), time.perf_counter()
                await runner.RunFunction(request, None)
                wall[i].append(time.perf_counter() - t0)
                cpu[i].append(time.thread_time() - c0)

    async def warm_up() -> None:
        for runner, request in jobs:
            await runner.RunFunction(request, None)

    loop = _loop()
    if warm:
        loop.run_until_complete(warm_up())
    gc.collect()
    for _ in range(rounds):
        loop.run_until_complete(one_round())
    return [Timing(median(c), median(w)) for c, w in zip(cpu, wall, strict=True)]


def time_pair(fn: Callable[[], object], *, repeats: int, min_seconds: float = 0.05) -> Timing:
    """Like `time_handler`, for a plain function."""
    cpu: list[float] = []
    wall: list[float] = []
    gc.collect()
    started = time.perf_counter()
    while len(cpu) < repeats or time.perf_counter() - started < min_seconds:
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        if len(cpu) >= repeats * 20:
            break
    return Timing(median(cpu), median(wall))


def load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"{one:.2f} (1 min), {five:.2f} (5 min)"
    except OSError:
        return "?"


_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def call(runner, request):
    """Run the handler once, in process."""
    return _loop().run_until_complete(runner.RunFunction(request, None))


# -- reporting --------------------------------------------------------------------------


def table(header: list[str], rows: list[tuple | list]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Section:
    """One benchmark's output: what it measures, its tables and its verdicts."""

    key: str
    title: str
    intro: str
    tables: list[tuple[str, str]] = field(default_factory=list)  # (caption, markdown)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    load: str = ""  # load average before and after: other processes share the cores
    code: str = ""  # function/ as measured, when it differs from the run's start

    def markdown(self) -> str:
        machine = machine_line() + (f"; load average {self.load}" if self.load else "")
        parts = [f"## {self.title}", "", self.intro, "", f"_{machine}_", ""]
        if self.code:
            parts += [f"_function/ measured here: {self.code}_", ""]
        for caption, md in self.tables:
            if caption:
                parts += [caption, ""]
            parts += [md, ""]
        for note in self.notes:
            parts += [f"- {note}"]
        parts += ["", f"_Benchmark wall time: {self.seconds:.0f} s._", ""]
        return "\n".join(parts)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
