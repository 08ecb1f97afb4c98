"""``xaistudy explain`` and ``xaistudy bundle verify|validate|preview``."""

from __future__ import annotations

from pathlib import Path

import click

from xaistudy.cli.options import executor_options
from xaistudy.devices import DEVICE_CHOICES

_FOLDER = click.Path(path_type=Path, file_okay=False)
_THRESHOLDS_HELP = (
    "Validation limits: key=value,... or a .toml file (max_clipped_fraction_mean, "
    "max_clipped_fraction, max_stored_logit_error, max_wrong_side, max_concept_similarity, "
    "min_effect_ratio, max_irrelevant_trend_r2; docs/bundle.md)."
)


def _two_counts(option: str, text: str, names: tuple[str, str], example: str, what: str):
    """``option FIRST,SECOND``: two counts, both 0 (``what`` left out) or both at least 1."""
    from xaistudy.errors import UserError

    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(f"{option} {text!r} must be two counts {','.join(names)} such as {example}")
    first, second = (int(p) for p in parts)
    if (first == 0) != (second == 0):
        raise UserError(
            f"{option} {text!r}: {names[0].lower()} and {names[1].lower()} are both 0 (no "
            f"{what}) or both at least 1"
        )
    return first, second


def _simulation_trials(text: str) -> tuple[int, int]:
    """``--simulation-trials LEARNING,TEST``."""
    return _two_counts(
        "--simulation-trials", text, ("LEARNING", "TEST"), "8,16", "forward-simulation scenes"
    )


def _counterfactual_pairs(text: str) -> tuple[int, int]:
    """``--counterfactual-pairs PRE,POST``."""
    return _two_counts(
        "--counterfactual-pairs", text, ("PRE", "POST"), "8,8", "counterfactual-simulation pairs"
    )


@click.command()
@click.option(
    "--model", "run_dir", required=True, type=_FOLDER, help="Run folder (xaistudy train)."
)
@click.option("--data", "data_dir", required=True, type=_FOLDER, help="Dataset folder.")
@click.option(
    "--compare-model",
    "compare_run",
    type=_FOLDER,
    default=None,
    help="A second run on the same dataset: the attribution maps' stability across models.",
)
@click.option("--out", required=True, type=_FOLDER, help="Bundle folder to write.")
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder.")
@click.option(
    "--conditions",
    default="baseline,counterfactuals,concepts",
    show_default=True,
    help="Comma-separated conditions to build: baseline, counterfactuals, concepts and the "
    "attribution methods (docs/methods.md).",
)
@click.option("--n-test", default=1000, show_default=True, help="Test images the conditions use.")
@click.option("--baseline-rows", default=30, show_default=True)
@click.option("--baseline-columns", default=5, show_default=True, help="Logit bins (odd).")
@click.option("--cf-sources", default=6, show_default=True, help="Counterfactual source images.")
@click.option(
    "--cf-targets", default=5, show_default=True, help="Counterfactual target logits (odd)."
)
@click.option("--concepts", "n_concepts", default=8, show_default=True, help="K concepts.")
@click.option(
    "--concept-highest", default=4, show_default=True, help="Strongest pictures per concept."
)
@click.option(
    "--concept-lowest", default=2, show_default=True, help="Weakest pictures per concept."
)
@click.option(
    "--concept-layer", type=int, default=None, help="Stage whose activations are factorized."
)
@click.option(
    "--attribution-rows",
    default=6,
    show_default=True,
    help="Scenes per column of each attribution condition (each shown with its map).",
)
@click.option(
    "--out-of-set-preset",
    default="unbiased",
    show_default=True,
    help="Preset whose scenes give the attribution maps' out-of-set change ('none': skip).",
)
@click.option(
    "--simulation-trials",
    default="8,16",
    show_default=True,
    metavar="LEARNING,TEST",
    help="Forward-simulation scenes: learning and test trials ('0,0': none; docs/designs).",
)
@click.option(
    "--counterfactual-pairs",
    default="8,8",
    show_default=True,
    metavar="PRE,POST",
    help="Counterfactual-simulation pairs (a scene and its intervened twin): pre-test and "
    "post-test trials ('0,0': none; docs/designs).",
)
@click.option("--gt-scenes", default=500, show_default=True, help="Intervened scenes per factor.")
@click.option(
    "--relevance-rule",
    default=None,
    help="key=value,... (min_flip_rate, min_variance_share, min_effect, combine) or a .toml file.",
)
@click.option("--thresholds", default=None, help=_THRESHOLDS_HELP)
@click.option(
    "--allow-invalid",
    is_flag=True,
    help="Publish a bundle that fails validation (the manifest records it).",
)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--seed", default=0, show_default=True)
@executor_options("each condition and the scene renderings as Ray tasks")
def explain(
    run_dir, data_dir, compare_run, out, device, overwrite, conditions, n_test, baseline_rows,
    baseline_columns, cf_sources, cf_targets, n_concepts, concept_highest, concept_lowest,
    concept_layer, attribution_rows, out_of_set_preset, simulation_trials,
    counterfactual_pairs, gt_scenes,
    relevance_rule, thresholds, allow_invalid, batch_size, seed, executor_name, address,
):  # fmt: skip
    """Precompute the explanations, ground truth and tutorial into a study bundle."""
    from explain.build import ExplainSettings
    from explain.build import explain as run_explain
    from explain.bundle_format import load_manifest
    from explain.ground_truth import RelevanceRule
    from explain.validation import Thresholds
    from xaistudy.devices import resolve_device
    from xaistudy.errors import UserError
    from xaistudy.executors import executor

    for name, value in (
        ("--n-test", n_test), ("--baseline-rows", baseline_rows), ("--cf-sources", cf_sources),
        ("--concepts", n_concepts), ("--gt-scenes", gt_scenes), ("--batch-size", batch_size),
        ("--concept-highest", concept_highest), ("--concept-lowest", concept_lowest),
        ("--attribution-rows", attribution_rows),
    ):  # fmt: skip
        if value < 1:
            raise UserError(f"{name} must be at least 1, got {value}")
    learning, test = _simulation_trials(simulation_trials)
    pre, post = _counterfactual_pairs(counterfactual_pairs)
    settings = ExplainSettings(
        conditions=tuple(c.strip() for c in conditions.split(",") if c.strip()),
        n_test=n_test,
        baseline_rows=baseline_rows,
        baseline_columns=baseline_columns,
        counterfactual_sources=cf_sources,
        counterfactual_targets=cf_targets,
        concepts=n_concepts,
        concept_highest=concept_highest,
        concept_lowest=concept_lowest,
        concept_layer=concept_layer,
        attribution_rows=attribution_rows,
        out_of_set_preset=None if out_of_set_preset == "none" else out_of_set_preset,
        ground_truth_scenes=gt_scenes,
        simulation_learning=learning,
        simulation_test=test,
        counterfactual_pre=pre,
        counterfactual_post=post,
        batch_size=batch_size,
        seed=seed,
        relevance_rule=RelevanceRule.parse(relevance_rule),
    )
    with executor(executor_name, address) as chosen:
        path, timings = run_explain(
            run_dir,
            data_dir,
            out,
            resolve_device(device),
            settings,
            overwrite=overwrite,
            thresholds=Thresholds.parse(thresholds),
            allow_invalid=allow_invalid,
            compare_run=compare_run,
            executor=chosen,
        )
    total = sum(timings.values())
    click.echo(f"wrote study bundle {path} in {total:.1f} s")
    failures = load_manifest(path).validation.failures
    if failures:
        click.echo(f"published despite failed validation (--allow-invalid): {'; '.join(failures)}")


@click.group()
def bundle() -> None:
    """Check or preview a study bundle."""


@bundle.command()
@click.argument("bundle_dir", type=click.Path(path_type=Path))
def verify(bundle_dir: Path) -> None:
    """Check the schema and the hash of every file of BUNDLE_DIR."""
    from explain.bundle_format import verify_bundle

    manifest = verify_bundle(bundle_dir)
    evidence = ", ".join(f"{name} {len(c.stimuli)}" for name, c in manifest.conditions.items())
    click.echo(
        f"bundle {bundle_dir} is intact: {len(manifest.files)} files, "
        f"conditions {', '.join(manifest.conditions)}; pictures shown: {evidence}"
    )
    pairs = manifest.counterfactual_simulation
    if pairs is not None:
        flipping = [sum(p.flips for p in phase) for phase in (pairs.pre, pairs.post)]
        click.echo(
            f"counterfactual-simulation pairs: {len(pairs.pre)} pre-test ({flipping[0]} "
            f"flipping), {len(pairs.post)} post-test ({flipping[1]} flipping), pictures decode"
        )


@bundle.command()
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option(
    "--model", "run_dir", required=True, type=_FOLDER, help="The run folder it was made from."
)
@click.option(
    "--data",
    "data_dir",
    type=_FOLDER,
    default=None,
    help="Dataset folder: needed only to train the attribute probe (RUN_DIR/probe) if missing.",
)
@click.option("--thresholds", default=None, help=_THRESHOLDS_HELP)
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
def validate(bundle_dir, run_dir, data_dir, thresholds, device) -> None:
    """Check that BUNDLE_DIR's stimuli, as served, are what their captions say.

    Re-scores every stored counterfactual image, reads what changes along each row with
    the attribute probe, re-judges the stored concept checks and the answer key, prints
    one table, and exits with status 2 naming each failed check.
    """
    from explain.bundle_format import load_manifest
    from explain.technical import technical_table
    from explain.validation import Thresholds, format_table, validate_bundle
    from xaistudy.devices import resolve_device
    from xaistudy.errors import UserError

    limits = Thresholds.parse(thresholds)
    result = validate_bundle(bundle_dir, run_dir, resolve_device(device), limits, data_dir)
    click.echo(format_table(result))
    scores = technical_table(load_manifest(bundle_dir).conditions)
    if scores:
        click.echo(scores)
    if not result.passed:
        raise UserError(
            f"bundle {bundle_dir} failed validation: {'; '.join(result.failures)} "
            "(limits: --thresholds key=value,... or a .toml file)"
        )


@bundle.command()
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for the PNGs (default: BUNDLE_DIR-preview beside the bundle).",
)
def preview(bundle_dir: Path, out: Path | None) -> None:
    """Write one PNG per condition (and the tutorial) showing what participants see."""
    from explain.preview import preview_bundle

    for path in preview_bundle(bundle_dir, out):
        click.echo(str(path))


COMMANDS = [explain, bundle]
