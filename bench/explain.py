"""Time ``xaistudy explain`` stage by stage on a trained run and its dataset.

Usage (the invertible ``cpu-small`` at 64 px, for the ICLR 2022 study's conditions)::

    xaistudy generate --preset iclr2022 --out /tmp/ex_data --n-train 40000 --n-val 500 \\
        --n-test 1000 --size 64 --interventions
    xaistudy train --data /tmp/ex_data --out /tmp/ex_run --config cpu-small
    python bench/explain.py --model /tmp/ex_run --data /tmp/ex_data
    python bench/explain.py --model /tmp/ex_run --data /tmp/ex_data --conditions all

Prints the seconds of each stage (each condition is one: an attribution method's
includes its technical scores), the total, and the threads torch used. ``--conditions``
takes a comma-separated list, or ``all`` for every condition the run's model supports.
The targets on 2 CPU cores: the ICLR 2022 study's three conditions, ground truth included
(9 factors x 500 scenes), under 2 minutes; its full set of conditions and scores under
3 minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# This script shares its name with the package it measures: keep bench/ off the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from explain.build import ExplainSettings, explain  # noqa: E402
from xaistudy.devices import resolve_device  # noqa: E402
from xaistudy.vocabulary import ATTRIBUTION_METHODS, CONDITIONS  # noqa: E402


def _conditions(text: str, run_dir: Path) -> tuple[str, ...]:
    if text != "all":
        return tuple(c.strip() for c in text.split(",") if c.strip())
    from explain.attribution import supports
    from modeling import load_run

    model = load_run(run_dir).model
    counterfactuals = ("counterfactuals",) if hasattr(model, "edit_logit") else ()
    methods = tuple(m for m in ATTRIBUTION_METHODS if supports(m, model))
    return ("baseline", *counterfactuals, "concepts", *methods)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run folder")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gt-scenes", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="keep the bundle here")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = ExplainSettings(
        ground_truth_scenes=args.gt_scenes, conditions=_conditions(args.conditions, args.model)
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "bundle"
        _, timings = explain(
            args.model, args.data, out, device, settings, overwrite=True, progress=False,
            allow_invalid=True,
        )  # fmt: skip
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    width = max(len(name) for name in timings)
    for name, seconds in timings.items():
        print(f"{name:<{width}}  {seconds:7.2f} s")
    print(f"{'total':<{width}}  {sum(timings.values()):7.2f} s")


if __name__ == "__main__":
    main()
