"""``python -m bench [ingest|purge|load|scheduler|lookup|dsr|capacity|keys|all|scale]
[--quick]``: ``all`` runs every benchmark but ``scale`` (the largest table this disk holds;
an hour or more, see bench/README.md)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from typing import Any

from . import common

BENCHMARKS = ("ingest", "purge", "load", "scheduler", "lookup", "dsr", "capacity", "keys")


def table(rows: list[tuple[str, str, str]]) -> str:
    header = ("benchmark", "measure", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [f"+{line}+"]
    out.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    out.append(f"+{line}+")
    for row in rows:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    out.append(f"+{line}+")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "which", nargs="?", default="all", choices=(*BENCHMARKS, "all", "scale", "profile")
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="regenerate the cached bulk databases (scheduler/lookup) instead of reusing them",
    )
    parser.add_argument(
        "--keep", action="store_true", help="scale: keep the big instance for another run"
    )
    args = parser.parse_args(argv)
    chosen = BENCHMARKS if args.which == "all" else (args.which,)
    rows: list[tuple[str, str, str]] = []
    results: dict[str, Any] = {}
    failed = []
    started = time.monotonic()
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        common.log(f"== {name}{' (quick)' if args.quick else ''}")
        t0 = time.monotonic()
        try:
            extra = {"keep": args.keep} if name == "scale" else {}
            result = module.run(quick=args.quick, rebuild=args.rebuild, **extra)
        except Exception:  # noqa: BLE001 - one failing benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
            rows.append((name, "FAILED", "see the traceback above"))
            continue
        result["duration_s"] = round(time.monotonic() - t0, 1)
        path = common.write_result(name, result)
        common.log(f"{name}: done in {result['duration_s']} s -> {path}")
        results[name] = result
        rows.extend(module.rows(result))
    if len(chosen) > 1:
        common.write_result("summary", {"quick": args.quick, "results": results})
    print(table(rows))
    print(f"total {time.monotonic() - started:.0f} s; JSON in {common.RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
