"""``xaistudy demo``: the whole loop on one machine, from nothing to a running study."""

from __future__ import annotations

from pathlib import Path

import click

from xaistudy.cli.demo_pipeline import DEMO_CONDITIONS
from xaistudy.devices import DEVICE_CHOICES


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo"),
    show_default=True,
    help="Folder for the dataset, model, bundle, database and report.",
)
@click.option(
    "--simulate",
    "n_simulated",
    type=click.IntRange(min=0),
    default=0,
    help="Also run this many simulated participants through the server and write the "
    "analysis report.",
)
@click.option("--no-serve", is_flag=True, help="Exit after building (and the report).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--conditions",
    default=None,
    help="Comma-separated conditions of the demo's bundle and study: baseline, "
    "counterfactuals, concepts and the attribution methods (docs/methods.md). Default: "
    f"the --study file's, else {','.join(DEMO_CONDITIONS)} (baseline,counterfactuals,"
    "concepts for an invertible --config).",
)
@click.option(
    "--config",
    "model_config",
    default=None,
    help="The model under study: resnet-cpu (a ResNet: no counterfactuals, but LRP), "
    "cpu-small (the invertible network), or any config xaistudy train takes. Default: "
    "cpu-small for conditions with counterfactuals, else resnet-cpu.",
)
@click.option(
    "--allow-invalid",
    is_flag=True,
    help="Publish and serve the bundle even when it fails validation (the manifest "
    "records it); without it such a bundle is refused.",
)
@click.option(
    "--study",
    "study_name",
    default=None,
    help="The study served: the name of a shipped study file (default, forward-simulation, "
    "verification, distinction, counterfactual-simulation, within-forward-simulation; "
    "study_server/studies) or a study file; it serves the bundle's conditions.",
)
def demo(
    out,
    n_simulated,
    no_serve,
    host,
    port,
    device,
    seed,
    conditions,
    model_config,
    allow_invalid,
    study_name,
):
    """Generate an iclr2022 dataset, train the model, precompute the bundle, serve the study.

    A second run reuses every stage that is already built and up to date.
    """
    from explain.build import check_conditions
    from modeling.configs import load_config
    from study_server.study import study_file, study_for_conditions
    from xaistudy.cli.demo_pipeline import (
        DemoSettings,
        admin_password,
        bundle_stage,
        check_port_free,
        dataset_stage,
        demo_choice,
        model_stage,
        server_config,
        simulate_stage,
        study_links,
        study_stage,
    )
    from xaistudy.cli.server import run_server
    from xaistudy.devices import resolve_device

    study = None if study_name is None else study_file(study_name)
    model_config, chosen = demo_choice(model_config, _bundle_conditions(conditions, study))
    # what the model cannot be explained by is refused before minutes of work
    check_conditions(chosen, load_config(model_config).architecture)
    settings = DemoSettings(
        out=out,
        seed=seed,
        conditions=chosen,
        config=model_config,
        study=study,
        allow_invalid=allow_invalid,
    )
    if study is not None:  # a study file that does not load fails before minutes of work
        study_for_conditions(settings.study_conditions, source=study)
    if not no_serve:
        check_port_free(host, port)  # fail before minutes of work, not after
    torch_device = resolve_device(device)
    dataset = dataset_stage(settings, torch_device)
    run_dir = model_stage(settings, dataset, torch_device)
    bundle_dir = bundle_stage(settings, dataset, run_dir, torch_device)
    study_stage(settings)
    if n_simulated:
        report = simulate_stage(settings, n_simulated, host)
        click.echo(f"Report: {report.resolve()}")
    password = admin_password(settings)
    if no_serve:
        click.echo(f"Bundle: {bundle_dir.resolve()}  (serve it with 'xaistudy demo')")
        return
    click.echo(f"Study ready:\n{study_links(host, port, password)}")
    run_server(server_config(settings), host, port, workers=2)


def _bundle_conditions(given: str | None, study) -> tuple[str, ...] | None:
    """The conditions the demo's bundle is built with: those given, else the study file's
    explained conditions, else None (the demo's choice for its model)."""
    if given is not None:
        return tuple(c.strip() for c in given.split(",") if c.strip())
    if study is None:
        return None
    from study_server.study import load_study

    loaded = load_study(study)
    return tuple(c for c in loaded.condition_names if loaded.explains(c))


COMMANDS = [demo]
