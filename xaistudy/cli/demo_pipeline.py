"""The demo pipeline behind ``xaistudy demo``: dataset -> model -> bundle -> study.

Each stage writes its folder under one demo folder and is skipped when that folder is
complete and was made from the current inputs of the stage before it; the stage's own
package answers that:

- ``data/``: :func:`generator.generate.dataset_is_current` (the demo's preset, seed,
  size and counts, with intervention splits);
- ``run/``: :func:`modeling.checkpoint.run_is_current` (the demo's config, trained on
  ``data/`` as it is); a run killed mid-way is resumed from its last checkpoint
  (:func:`modeling.checkpoint.run_can_resume`);
- ``bundle/``: :func:`explain.build.bundle_is_current` (every hash verifies, and it
  explains ``run/`` on ``data/``). A bundle that fails validation is served only with
  ``--allow-invalid``, as ``xaistudy explain`` publishes one.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import click

from xaistudy.errors import UserError
from xaistudy.files import kept_secret
from xaistudy.vocabulary import CONDITIONS, NO_EXPLANATION

# The demo's model and conditions when none are asked for: on two CPU cores this ResNet's
# bundle passes the validity checks; the invertible cpu-small's does not (its answer key
# has no clear contrast: docs/model.md, "The configs against their targets"), so it is
# trained only for a condition that needs it (counterfactuals).
DEMO_CONFIG = "resnet-cpu"
DEMO_CONDITIONS: tuple[str, ...] = ("baseline", "concepts", "lrp")
INVERTIBLE_CONFIG = "cpu-small"
SIMULATED_ACCURACY = 0.65  # of a condition the demo's accuracy table does not name
# A verification study's simulated acceptance, (P(right verdict | model right),
# P(right verdict | model wrong)), of a condition the demo's table does not name.
SIMULATED_ACCEPTANCE = (0.85, 0.45)
# A counterfactual-simulation study's pre-test, before anyone saw an explanation: every
# condition alike, a little above chance.
SIMULATED_PRE_ACCURACY = 0.55


@dataclass(frozen=True)
class DemoSettings:
    """What the demo builds (the defaults are the documented demo)."""

    out: Path = Path("demo")
    preset: str = "iclr2022"
    size: int = 64
    n_train: int = 40000  # many scenes, each seen a few times: nothing to memorize
    n_val: int = 500
    n_test: int = 1000
    config: str = DEMO_CONFIG
    epochs: int | None = None  # None: the config's default
    gt_scenes: int = 500
    seed: int = 0
    conditions: tuple[str, ...] = DEMO_CONDITIONS
    study: Path | None = None  # the study file served (None: the shipped default)
    allow_invalid: bool = False  # publish a bundle that fails validation (and say so)
    # the simulated participants' accuracy per condition (SIMULATED_ACCURACY otherwise)
    accuracy: dict[str, float] = field(
        default_factory=lambda: {
            NO_EXPLANATION: 0.55,
            "baseline": 0.7,
            "counterfactuals": 0.8,
            "concepts": 0.6,
        }
    )
    # questionnaire answers (analysis.simulate.ScaleAnswers): each condition's distance
    # from a scale's midpoint, and its change over a pre/post block
    scale_offset: dict[str, float] = field(
        default_factory=lambda: {
            NO_EXPLANATION: -0.4,
            "baseline": 0.2,
            "counterfactuals": 0.6,
            "concepts": 0.0,
        }
    )
    scale_change: dict[str, float] = field(
        default_factory=lambda: {
            NO_EXPLANATION: 0.4,
            "baseline": 0.8,
            "counterfactuals": 1.2,
            "concepts": 0.6,
        }
    )

    # a verification study's simulated participants per condition (SIMULATED_ACCEPTANCE
    # otherwise): the control accepts most wrong decisions, the explanations fewer
    acceptance: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            NO_EXPLANATION: (0.85, 0.6),
            "baseline": (0.85, 0.4),
            "counterfactuals": (0.9, 0.3),
            "concepts": (0.8, 0.5),
        }
    )

    @property
    def study_conditions(self) -> tuple[str, ...]:
        """The conditions the demo's study serves: the bundle's, and the study file's
        explanation-free control when it has one."""
        if self.study is None:
            return self.conditions
        from study_server.study import load_study

        control = NO_EXPLANATION in load_study(self.study).condition_names
        return (NO_EXPLANATION,) * control + self.conditions

    @property
    def simulated_accuracy(self) -> dict[str, float]:
        return {c: self.accuracy.get(c, SIMULATED_ACCURACY) for c in self.study_conditions}

    @property
    def simulated_acceptance(self) -> dict[str, tuple[float, float]]:
        return {c: self.acceptance.get(c, SIMULATED_ACCEPTANCE) for c in self.study_conditions}

    @property
    def verification(self) -> bool:
        """Whether the demo's study is of the verification design."""
        from study_server.study import VERIFICATION, load_study

        return self.study is not None and load_study(self.study).design == VERIFICATION

    @property
    def simulated_pre_accuracy(self) -> dict[str, float]:
        """A counterfactual-simulation study's pre-test accuracy per condition."""
        return dict.fromkeys(self.study_conditions, SIMULATED_PRE_ACCURACY)

    @property
    def study_path(self) -> Path | None:
        """The demo's study file: the shipped default for its three conditions, else one
        written for the study and conditions asked for (``study_stage``)."""
        if self.study is None and self.conditions == CONDITIONS:
            return None
        return self.out / f"study{self._named}.toml"

    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def run_dir(self) -> Path:
        return self.out / "run"

    @property
    def bundle_dir(self) -> Path:
        return self.out / "bundle"

    @property
    def _named(self) -> str:
        """What the study's own files are named by: each study its own database and
        report, so that demos of two designs do not mix their participants."""
        return "" if self.study is None else f"-{Path(self.study).stem}"

    @property
    def report_dir(self) -> Path:
        return self.out / f"report{self._named}"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{(self.out / f'study{self._named}.sqlite').resolve()}"


def demo_choice(
    config: str | None, conditions: tuple[str, ...] | None
) -> tuple[str, tuple[str, ...]]:
    """The model the demo trains and the conditions it explains, where not given: the
    ResNet and ``DEMO_CONDITIONS``; ``cpu-small`` for conditions with counterfactuals; the
    ICLR 2022 study's three for an invertible ``config``."""
    from modeling.configs import load_config

    if conditions is None:
        invertible = config is not None and load_config(config).architecture == "invertible"
        conditions = CONDITIONS if invertible else DEMO_CONDITIONS
    if config is None:
        config = INVERTIBLE_CONFIG if "counterfactuals" in conditions else DEMO_CONFIG
    return config, conditions


def _say(message: str) -> None:
    click.secho(message, err=True, bold=True)


# -- stages: each asks its own package whether what is there is up to date --------------


def dataset_stage(settings: DemoSettings, device):
    """Generate the demo dataset unless an identical one is there; return the folder."""
    from generator.biases import load_spec
    from generator.dataset import DatasetFolder
    from generator.generate import dataset_is_current, free_factors, generate_dataset
    from modeling.configs import load_config

    spec = load_spec(settings.preset)
    counts = {"train": settings.n_train, "val": settings.n_val, "test": settings.n_test}
    # a config that trains on pairs gets every factor the preset does not tie to the class
    pairs = free_factors(spec) if load_config(settings.config).invariance_weight else ()
    if dataset_is_current(
        settings.data_dir,
        settings.preset,
        seed=settings.seed,
        size=settings.size,
        counts=counts,
        interventions=True,
        train_pairs=pairs,
    ):
        _say(f"[1/4] dataset: up to date in {settings.data_dir}")
        return DatasetFolder(settings.data_dir)
    _say(
        f"[1/4] dataset: rendering {sum(counts.values())} {settings.preset} scenes at "
        f"{settings.size} px, plus the intervention splits"
        + (" and the training pairs" if pairs else "")
    )
    generate_dataset(
        spec,
        settings.data_dir,
        n_train=settings.n_train,
        n_val=settings.n_val,
        n_test=settings.n_test,
        size=settings.size,
        seed=settings.seed,
        interventions=True,
        train_pairs=pairs,
        device=device,
        overwrite=True,
    )
    return DatasetFolder(settings.data_dir)


def model_stage(settings: DemoSettings, dataset, device) -> Path:
    """Train the demo model unless a finished run on this dataset is there; return its folder."""
    from modeling.checkpoint import read_model_card, run_is_current

    run_dir = settings.run_dir
    if run_is_current(run_dir, dataset, settings.config):
        _say(f"[2/4] model: up to date in {run_dir}")
    else:
        _train(settings, dataset, device)
    card = read_model_card(run_dir)
    click.echo(
        f"      test accuracy {card.accuracy['test']:.3f} "
        f"(ceiling {card.ceiling_accuracy:.3f} from the true scene attributes)",
        err=True,
    )
    return run_dir


def _train(settings: DemoSettings, dataset, device) -> None:
    """Train the demo model, resuming an unfinished run of the same inputs."""
    from modeling.checkpoint import run_can_resume
    from modeling.configs import load_config
    from modeling.training import TrainOptions, train

    run_dir = settings.run_dir
    resume = run_can_resume(run_dir, dataset, settings.config)
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    _say(f"[2/4] model: {'resuming' if resume else 'training'} {settings.config} on {dataset.root}")
    train(
        TrainOptions(
            data=dataset.root,
            out=run_dir,
            device=device,
            config=None if resume else load_config(settings.config),
            epochs=settings.epochs,
            seed=None if resume else settings.seed,
            resume=resume,
        )
    )


def bundle_stage(settings: DemoSettings, dataset, run_dir: Path, device) -> Path:
    """Precompute the bundle unless a verified one of this run and dataset is there; a
    bundle that failed validation is refused (:class:`UserError`) unless allowed."""
    from explain.build import bundle_is_current
    from explain.bundle_format import load_manifest

    bundle_dir = settings.bundle_dir
    if bundle_is_current(bundle_dir, run_dir, dataset, settings.conditions):
        _say(f"[3/4] bundle: up to date in {bundle_dir}")
    else:
        _say(f"[3/4] bundle: explanations and ground truth of {run_dir}")
        _build_bundle(settings, dataset, run_dir, device)
    failures = load_manifest(bundle_dir).validation.failures
    if failures and not settings.allow_invalid:
        # a bundle published earlier with the override is not served without it
        raise UserError(invalid_demo_message(settings, failures))
    if failures:
        _say(f"[3/4] bundle: published despite failed validation: {'; '.join(failures)}")
    return bundle_dir


def _build_bundle(settings: DemoSettings, dataset, run_dir: Path, device) -> None:
    """Explain the run; the gate of :func:`explain.build.build_bundle` publishes a bundle
    that fails validation only with ``settings.allow_invalid``."""
    from explain.build import ExplainSettings, build_bundle
    from explain.probe import PROBE_DIR
    from explain.validation import InvalidBundle
    from modeling import load_run

    run = load_run(run_dir, device)
    explain = ExplainSettings(
        ground_truth_scenes=settings.gt_scenes, seed=settings.seed, conditions=settings.conditions
    )
    try:
        build_bundle(
            run.model,
            run.card,
            dataset,
            settings.bundle_dir,
            device,
            explain,
            overwrite=True,
            allow_invalid=settings.allow_invalid,
            probe_dir=run_dir / PROBE_DIR,
        )
    except InvalidBundle as refused:
        raise UserError(invalid_demo_message(settings, refused.validation.failures)) from None


def invalid_demo_message(settings: DemoSettings, failures: tuple[str, ...]) -> str:
    """Why the demo serves nothing, and the two ways on."""
    why = (
        " The counterfactuals need the invertible network, and cpu-small, the one that "
        "trains in minutes on a CPU, does not pass these checks (docs/model.md, "
        '"The configs against their targets").'
        if "counterfactuals" in settings.conditions
        else ""
    )
    return (
        f"the demo's bundle failed validation ({'; '.join(failures)}); nothing is served."
        f"{why} For a study that passes, run it with --conditions {','.join(DEMO_CONDITIONS)} "
        f"and no --config (the {DEMO_CONFIG} ResNet), or pass --allow-invalid to publish "
        "this one anyway for trying the platform (its manifest records it)"
    )


def study_stage(settings: DemoSettings) -> Path | None:
    """Write the demo's study file when it is not the default study of the three
    conditions: the study asked for (``--study``), serving the bundle's conditions."""
    from study_server.study import study_for_conditions, write_study

    if settings.study_path is None:
        return None
    data = study_for_conditions(settings.study_conditions, source=settings.study)
    header = (
        f"The demo's study: {settings.study or 'the default study'} serving "
        f"{', '.join(settings.study_conditions)} (made by xaistudy demo; edit a copy)."
    )
    return write_study(data, settings.study_path, header)


def admin_password(settings: DemoSettings) -> str:
    """The demo's admin password: made once, kept in ``admin-password.txt``."""
    return kept_secret(settings.out / "admin-password.txt", lambda: secrets.token_urlsafe(12))


def server_config(settings: DemoSettings):
    """The study server's settings for the demo: a DevelopmentConfig of its bundle, its
    database and its admin password (the environment's other settings apply)."""
    from study_server.config import DevelopmentConfig

    return DevelopmentConfig(
        {
            "XAISTUDY_BUNDLE": str(settings.bundle_dir),
            "SQLALCHEMY_DATABASE_URI": settings.db_url,
            "XAISTUDY_ADMIN_PASSWORD": admin_password(settings),
            **({"XAISTUDY_STUDY": str(settings.study_path)} if settings.study_path else {}),
        }
    )


def simulate_stage(settings: DemoSettings, n: int, host: str) -> Path:
    """Run ``n`` simulated participants through the server over HTTP; write the report."""

    from analysis.load import load_bundle
    from analysis.report import analyze
    from analysis.simulate import ScaleAnswers, SimulationSpec
    from simulation.runs import local_server, simulate_http
    from study_server import create_app
    from xaistudy.cli.analysis import database_responses, summary_lines
    from xaistudy.too_fast import TooFastRule

    app = create_app(server_config(settings))
    bundle = load_bundle(settings.bundle_dir)
    scales = ScaleAnswers(offset=settings.scale_offset, change=settings.scale_change)
    spec = SimulationSpec(
        accuracy=settings.simulated_accuracy,
        acceptance=settings.simulated_acceptance,
        pre_accuracy=settings.simulated_pre_accuracy,
        n=n,
        seed=settings.seed,
        scales=scales,
    )
    with local_server(app, host) as url:
        _say(f"[4/4] simulate: {n} participants through {url}")
        summary = simulate_http(url, bundle, spec, study=settings.study_path)
    statuses = ", ".join(f"{k} {v}" for k, v in summary.statuses.items())
    _say(f"      participants: {statuses}")
    # Simulated participants click through in well under a second: no speed exclusion.
    analysis = analyze(
        settings.report_dir,
        settings.bundle_dir,
        database_responses(settings.db_url),
        exclusions=TooFastRule(min_seconds=0.0, min_median_fraction=None),
        seed=settings.seed,
    )
    if settings.verification:
        _say(
            "      verification by condition (set P(right verdict) when the model is right/"
            f"wrong: {_format_acceptance(settings.simulated_acceptance)})"
        )
    else:
        _say(
            f"      accuracy by condition (set: {_format_accuracy(settings.simulated_accuracy)}; "
            f"a counterfactual-simulation pre-test: {SIMULATED_PRE_ACCURACY:g})"
        )
    _say(
        "      questionnaires: offset from the midpoint "
        f"{_format_accuracy(settings.scale_offset)}; "
        f"pre/post change {_format_accuracy(settings.scale_change)}"
    )
    click.echo(summary_lines(analysis), err=True)
    return settings.report_dir / "report.html"


def _format_accuracy(accuracy: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in accuracy.items())


def _format_acceptance(acceptance: dict[str, tuple[float, float]]) -> str:
    return ", ".join(f"{k}={right:g}/{wrong:g}" for k, (right, wrong) in acceptance.items())


def study_links(host: str, port: int, password: str) -> str:
    base = f"http://{host}:{port}"
    return "\n".join(
        [
            f"  participant link: {base}/?PROLIFIC_PID=demo-participant&STUDY_ID=demo"
            "&SESSION_ID=demo-session",
            f"  preview link:     {base}/admin/ (log in, then 'Preview' a condition: "
            "previews never count)",
            f"  admin login:      {base}/admin/login   password: {password}",
        ]
    )


def check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"cannot serve on {host}:{port} ({exc.strerror}); stop what uses it or pass "
                "--port with a free port"
            ) from exc
