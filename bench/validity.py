"""Does a model config give a valid study? Training time, accuracy and every validation figure.

For each seed: train CONFIG on the dataset (or reuse a finished run of that seed), build
its study bundle with the validation stage (published even when it fails, so that every
figure is printed), and print one row of figures; then the same figures against the
config's targets (issue "a study that measures what it claims", docs/model.md).

    xaistudy generate --preset iclr2022 --out /tmp/v_data --size 64 --n-train 40000 \\
        --n-val 500 --n-test 1000 --interventions
    .venv/bin/python bench/validity.py --data /tmp/v_data --config cpu-small --seeds 0 1 2 \\
        --work /tmp/v_runs

Runs and bundles are kept under ``--work`` (``<config>-seed<S>/run``, ``.../bundle``), so
a second call only prints; ``--table`` prints each bundle's whole validation table too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# This script shares its name with no package, but keep bench/ off the path all the same.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from explain.build import ExplainSettings, explain  # noqa: E402
from explain.bundle_format import load_manifest  # noqa: E402
from explain.manifest import Manifest  # noqa: E402
from explain.validation import format_table  # noqa: E402
from modeling.card import ModelCard  # noqa: E402
from modeling.checkpoint import CARD_FILE, read_model_card  # noqa: E402
from modeling.configs import load_config  # noqa: E402
from modeling.training import TrainOptions, train  # noqa: E402
from xaistudy.devices import resolve_device  # noqa: E402

NUISANCE = ("bg_color", "rotation", "position")
# The targets a config is held to (docs/model.md): name -> (figure, test, limit).
TARGETS = {
    "cpu-small": {
        "training_seconds": ("<=", 360),
        "test_accuracy": (">=", 0.90),
        "clipped_mean": ("<=", 0.01),
        "clipped_max": ("<=", 0.03),
        "stored_error_max": ("<=", 0.5),
        "wrong_side": ("<=", 0),
        "arm_trend_r2": (">=", 0.3),
        "nuisance_trend_r2_max": ("<=", 0.1),
        "effect_ratio": (">=", 2.0),
    },
    "cpu-study": {
        "training_seconds": ("<=", 3600),
        "test_accuracy": (">=", 0.95),
        "clipped_mean": ("<=", 0.005),
        "clipped_max": ("<=", 0.01),
        "stored_error_max": ("<=", 0.25),
        "wrong_side": ("<=", 0),
        "arm_trend_r2": (">=", 0.5),
        "nuisance_trend_r2_max": ("<=", 0.05),
        "effect_ratio": (">=", 3.0),
    },
}


def run_seed(args, seed: int, device: torch.device) -> dict:
    """Train (unless finished) and explain one seed; return its figures."""
    folder = args.work / f"{Path(args.config).stem}-seed{seed}"
    run_dir, bundle_dir = folder / "run", folder / "bundle"
    if (run_dir / CARD_FILE).exists():
        card = read_model_card(run_dir)
    else:
        resume = (run_dir / "config.json").exists()
        options = TrainOptions(
            data=args.data,
            out=run_dir,
            device=device,
            config=None if resume else load_config(args.config),
            seed=None if resume else seed,
            resume=resume,
            progress=not args.quiet,
        )
        card = train(options)
    if not (bundle_dir / "manifest.json").exists():
        explain(
            run_dir, args.data, bundle_dir, device,
            ExplainSettings(seed=seed, baseline_rows=args.baseline_rows),
            overwrite=True, progress=not args.quiet, allow_invalid=True,
        )  # fmt: skip
    return figures(card, load_manifest(bundle_dir))


def figures(card: ModelCard, manifest: Manifest) -> dict:
    """The figures the targets name, from a model card and its bundle's manifest."""
    validation = manifest.validation
    cf, truth = validation.counterfactuals, validation.ground_truth
    trends = cf.attribute_trends
    strongest = max(trends, key=lambda key: trends[key].r2)
    return {
        "training_seconds": card.training_seconds,
        "test_accuracy": card.accuracy["test"],
        "clipped_mean": cf.clipped_fraction_mean,
        "clipped_max": cf.clipped_fraction_max,
        "stored_error_max": cf.stored_logit_error_max,
        "wrong_side": cf.wrong_side,
        "arm_trend_r2": trends["arm_position"].r2,
        "strongest_trend": strongest,
        "nuisance_trend_r2_max": max(trends[key].r2 for key in NUISANCE),
        "effect_ratio": truth.effect_ratio,
        "relevant": ",".join(a.key for a in manifest.attributes if a.relevant),
        "passed": validation.passed,
        "table": format_table(validation),
    }


def meets(value, test: str, limit: float) -> bool:
    if value is None:
        return False
    return value <= limit if test == "<=" else value >= limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder")
    parser.add_argument("--config", default="cpu-small", help="config name or .toml file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--work", type=Path, required=True, help="runs and bundles go here")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--baseline-rows", type=int, default=30,
        help="images per baseline column (a confident model leaves few undecided test images)",
    )  # fmt: skip
    parser.add_argument(
        "--targets", help="hold the runs to this named config's targets (default: --config's)"
    )
    parser.add_argument("--table", action="store_true", help="print each validation table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = {seed: run_seed(args, seed, device) for seed in args.seeds}

    print(f"config {args.config}, dataset {args.data}, device {device}")
    keys = [k for k in next(iter(rows.values())) if k != "table"]
    print("seed  " + "  ".join(keys))
    for seed, row in rows.items():
        print(f"{seed:<4}  " + "  ".join(_fmt(row[k]) for k in keys))
        if args.table:
            print(row["table"])
    target_name = args.targets or load_config(args.config).name
    targets = TARGETS.get(target_name)
    if targets:
        print(f"\ntargets of {target_name} (every seed must meet them)")
        for key, (test, limit) in targets.items():
            values = [row[key] for row in rows.values()]
            verdict = "met" if all(meets(v, test, limit) for v in values) else "NOT met"
            print(f"  {key:<24} {test} {limit:<8g} {' '.join(map(_fmt, values)):<30} {verdict}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


if __name__ == "__main__":
    main()
