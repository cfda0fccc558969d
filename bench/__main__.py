"""Run the benchmarks: `python -m bench [--quick] [--out FILE] [NAME ...]`.

Without names every benchmark runs. Each prints its table(s) as it finishes; at the end
the Markdown report is written: `bench/RESULTS.md` for a full run of everything, else
`bench/RESULTS.partial.md` (a quick or partial run never overwrites the full results),
or the file given with `--out`.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from bench.common import commit, load_average, log, machine_markdown, source_state

BENCHMARKS = {
    "tenant": ("bench.tenant", "tenant step: sticky and allocation, by pool size"),
    "throughput": ("bench.throughput", "sticky path over real gRPC, real vs no-op function"),
    "floor": ("bench.floor", "handler time against protobuf parse + serialize"),
    "pool": ("bench.poolstep", "pool step over 10,000 claims"),
    "poolsize": ("bench.poolsize", "pool step at 1,000, 10,000 and 50,000 claims"),
    "convergence": ("bench.convergence", "100 tenants at once from one snapshot"),
    "rss": ("bench.rss", "peak RSS of the function server after 10,000 requests"),
}
HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of function-tcp-access; see bench/README.md.",
        epilog="benchmarks: "
        + "; ".join(f"{name}: {what}" for name, (_, what) in BENCHMARKS.items()),
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats and variants (< 1 minute)"
    )
    parser.add_argument("--out", type=Path, help="where to write the Markdown report")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; one of {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    full = not args.quick and names == list(BENCHMARKS)
    out = args.out or HERE / ("RESULTS.md" if full else "RESULTS.partial.md")

    started = time.perf_counter()
    state = source_state()
    head = commit()
    sections = []
    for name in names:
        module = importlib.import_module(BENCHMARKS[name][0])
        log(f"== {name} ==")
        before, code = load_average(), source_state()
        section = module.run(quick=args.quick)
        section.load = f"before {before}, after {load_average()}"
        if code != state or source_state() != code:
            section.code = code if source_state() == code else f"{code}, then {source_state()}"
        print(section.markdown(), flush=True)
        sections.append(section)
    elapsed = time.perf_counter() - started
    if source_state() != state:
        state += (
            " -- CHANGED during the run (other engineers edit and commit meanwhile; sections "
            f"say what they measured); at the end: HEAD {commit()}, {source_state()}"
        )
    elif commit() != head:
        state += f" (HEAD moved to {commit()} during the run; function/ did not change)"
    kind = "quick run (`--quick`)" if args.quick else "full run"
    parts = [
        "# Benchmark results",
        "",
        f"Produced by `python -m bench{' --quick' if args.quick else ''}"
        f"{' ' + ' '.join(args.names) if args.names else ''}` ({kind}, "
        f"{elapsed:.0f} s in all). What each benchmark measures and its targets: "
        "`bench/README.md`. Times are medians over repeated runs.",
        "",
        "## Machine",
        "",
        machine_markdown(state, head),
        "",
    ]
    missed = [note for s in sections for note in s.notes if note.startswith("MISSED")]
    parts += ["## Targets missed", ""]
    parts += [f"- {note}" for note in missed] or ["- none"]
    parts += [""]
    parts += [s.markdown() for s in sections]
    out.write_text("\n".join(parts))
    log(f"wrote {out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
