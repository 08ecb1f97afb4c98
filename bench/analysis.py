"""Time the analysis of a large simulated study: ``python bench/analysis.py [--n 10000]``.

Simulates N participants (three conditions, 7 attributes, 5% failing the attention check,
5% too fast) into the CSV export format, then runs ``xaistudy analyze``'s stages on it,
bootstrap (2,000 resamples) included, and prints the seconds each stage took. Target:
under 30 s for 10,000 participants on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="simulated participants")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--model", default="auto", choices=["auto", "bayes", "gee"])
    args = parser.parse_args()

    from make_bundle import make_fixture_bundle

    from analysis.load import load_bundle
    from analysis.report import analyze
    from analysis.simulate import SimulationSpec, simulate_frames, write_frames
    from simulation.runs import answered_pages

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle_dir = make_fixture_bundle(tmp / "bundle")
        spec = SimulationSpec(
            accuracy={"baseline": 0.7, "counterfactuals": 0.8, "concepts": 0.6},
            n=args.n,
            seed=0,
            attention_fail=0.05,
            too_fast=0.05,
        )
        start = time.perf_counter()
        frames = simulate_frames(load_bundle(bundle_dir), spec, answered_pages())
        simulate_s = time.perf_counter() - start
        start = time.perf_counter()
        write_frames(frames, tmp / "responses")
        write_s = time.perf_counter() - start

        start = time.perf_counter()
        analysis = analyze(
            tmp / "report",
            bundle_dir,
            responses=tmp / "responses",
            n_boot=args.bootstrap,
            model=args.model,
        )
        total = time.perf_counter() - start

    rows = len(frames["answers"])
    print(
        f"participants {args.n}, answers {rows}, bootstrap {args.bootstrap} resamples, "
        f"model {analysis.model.method}"
    )
    print(f"simulate            {simulate_s:7.2f} s")
    print(f"write CSV           {write_s:7.2f} s")
    for stage, seconds in analysis.timings.items():
        print(f"analyze: {stage:<10} {seconds:7.2f} s")
    print(f"analyze total       {total:7.2f} s  (target < 30 s for 10,000 participants)")
    for _, row in analysis.tables.by_condition.iterrows():
        print(
            f"  {row['condition']:<16} {row['accuracy']:.3f} "
            f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] n={row['n']}"
        )


if __name__ == "__main__":
    main()
