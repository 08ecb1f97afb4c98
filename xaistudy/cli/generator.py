"""Commands of the generator stage: generate, render, preview, merge and ``biases``."""

from __future__ import annotations

from pathlib import Path

import click

from xaistudy.cli.options import executor_options
from xaistudy.devices import DEVICE_CHOICES
from xaistudy.errors import UserError


def _spec(preset: str | None, bias: str | None):
    from generator.biases import load_spec

    if preset and bias:
        raise UserError("give either --preset or --bias, not both")
    return load_spec(bias or preset or "iclr2022")


@click.command()
@click.option(
    "--preset",
    metavar="NAME|FILE.toml",
    help="Preset name (see 'xaistudy biases list') or a .toml path. Default: iclr2022.",
)
@click.option("--bias", metavar="FILE.toml", help="Your own bias specification (docs/biases.md).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Dataset folder.")
@click.option("--n-train", default=10_000, show_default=True, type=int)
@click.option("--n-val", default=1_000, show_default=True, type=int)
@click.option("--n-test", default=1_000, show_default=True, type=int)
@click.option("--size", default=128, show_default=True, type=int, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--interventions",
    is_flag=True,
    help="Also write, per factor, the test split with only that factor redrawn.",
)
@click.option(
    "--train-pairs",
    metavar="FACTOR,...|free",
    help="Also write the training scenes again with these factors redrawn (split "
    "train_pairs, for configs with invariance_weight); 'free': every factor the bias "
    "specification does not tie to the class.",
)
@click.option("--device", default="auto", show_default=True, type=click.Choice(DEVICE_CHOICES))
@click.option("--png", is_flag=True, help="Also write browsable PNGs (<split>/png/).")
@click.option("--shard", metavar="i/N", help="Render only the i-th of N parts (merge them later).")
@executor_options("shards as Ray tasks, merged into --out")
@click.option(
    "--shards",
    type=int,
    help="Shards for --executor ray (default: by scenes and the cluster's CPUs).",
)
@click.option("--batch-size", default=256, show_default=True, type=int)
@click.option("--antialias/--no-antialias", default=True, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing non-empty --out folder.")
def generate(
    preset, bias, out, n_train, n_val, n_test, size, seed, interventions, train_pairs, device,
    png, shard, executor_name, address, shards, batch_size, antialias, overwrite,
):  # fmt: skip
    """Sample scenes from a bias specification and render a dataset folder."""
    from generator.generate import generate_dataset, parse_shard
    from xaistudy.devices import resolve_device

    spec = _spec(preset, bias)
    train_pairs = pair_factors(spec, train_pairs)
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if executor_name == "ray":
        if shard is not None:
            raise UserError(
                "--shard i/N renders one part for a job array; --executor ray renders all "
                "parts itself (--shards N): give one of them"
            )
        if device == "cuda":
            raise UserError(
                "--executor ray renders on the cluster's CPUs: use --device auto or cpu"
            )
        _generate_on_ray(
            spec, out, address, shards, n_train=n_train, n_val=n_val, n_test=n_test, size=size,
            seed=seed, interventions=interventions, train_pairs=train_pairs, png=png,
            overwrite=overwrite,
            antialias=antialias, batch_size=batch_size,
        )  # fmt: skip
        return
    if address is not None or shards is not None:
        raise UserError("--address and --shards go with --executor ray")
    path = generate_dataset(
        spec,
        out,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        size=size,
        seed=seed,
        interventions=interventions,
        train_pairs=train_pairs,
        device=resolve_device(device),
        png=png,
        shard=parse_shard(shard),
        overwrite=overwrite,
        antialias=antialias,
        batch_size=batch_size,
    )
    click.echo(f"wrote {path}")


def pair_factors(spec, text: str | None) -> tuple[str, ...]:
    """``--train-pairs``: the factors named, or with ``free`` every factor ``spec`` does not
    tie to the class (the generator refuses the others)."""
    from generator.generate import free_factors

    if not text:
        return ()
    if text.strip() == "free":
        return free_factors(spec)
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _generate_on_ray(spec, out, address, shards, **options) -> None:
    from generator.sharded import generate_sharded
    from xaistudy.executors import executor

    with executor("ray", address) as ray:
        run = generate_sharded(spec, out, ray, shards=shards, **options)
    complete = run.shards - run.rendered
    kept = f" ({complete} complete from an earlier run)" if complete else ""
    click.echo(f"rendered {run.rendered} of {run.shards} shards{kept}; wrote {run.path}")


@click.command()
@click.option(
    "--params",
    "params_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Two4Two parameters, one JSON object a line.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Dataset folder.")
@click.option("--size", default=128, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(DEVICE_CHOICES))
@click.option("--png", is_flag=True, help="Also write browsable PNGs (test/png/).")
@click.option("--overwrite", is_flag=True, help="Replace an existing non-empty --out folder.")
def render(params_file, out, size, device, png, overwrite):
    """Render Two4Two scene parameters (JSON lines) into a dataset folder (split test)."""
    from generator.twofortwo import render_two4two
    from xaistudy.devices import resolve_device

    path = render_two4two(
        params_file, out, size=size, device=resolve_device(device), png=png, overwrite=overwrite
    )
    click.echo(f"wrote {path}")


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="PNG to write. Default: DATASET/preview_<split>.png.",
)
@click.option("--n", "count", default=48, show_default=True, type=int)
def preview(dataset, split, out, count):
    """Write a contact sheet PNG of a split, captioned with label and key attributes."""
    from generator.preview import write_contact_sheet

    path = write_contact_sheet(dataset, out or dataset / f"preview_{split}.png", split, count)
    click.echo(f"wrote {path}")


@click.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Merged folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing non-empty --out folder.")
def merge(shards, out, overwrite):
    """Merge the shard folders of one 'generate --shard i/N' run into one dataset folder."""
    from generator.generate import merge_shards

    click.echo(f"wrote {merge_shards(list(shards), out, overwrite=overwrite)}")


@click.group()
def biases():
    """Inspect bias specifications and presets."""


@biases.command("list")
def list_command():
    """List the presets shipped with xaistudy."""
    from generator.biases import list_presets, load_spec

    for name in list_presets():
        click.echo(f"{name:<12} {load_spec(name).description}")


@biases.command()
@click.argument("spec_source", metavar="PRESET|FILE.toml")
@click.option("--n", "count", default=20_000, show_default=True, type=int, help="Scenes sampled.")
@click.option("--seed", default=0, show_default=True, type=int)
def show(spec_source, count, seed):
    """Print a specification and how predictive each attribute is of the label."""
    import numpy as np

    from generator.bias_report import describe_spec, format_predictiveness, predictiveness
    from generator.biases import load_spec

    if count < 100:
        raise UserError(f"--n must be at least 100 scenes, got {count}")
    spec = load_spec(spec_source)
    click.echo(describe_spec(spec))
    click.echo()
    params = spec.sample(count, np.random.default_rng(seed))
    click.echo(format_predictiveness(predictiveness(params, seed=seed), count))


COMMANDS = [generate, render, preview, merge, biases]
