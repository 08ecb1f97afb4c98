"""``xaistudy analyze``, ``xaistudy simulate`` and ``xaistudy power`` (thin: see analysis/)."""

from __future__ import annotations

from pathlib import Path

import click

from xaistudy.errors import UserError
from xaistudy.files import atomic_write_bytes, atomic_write_text
from xaistudy.vocabulary import NO_EXPLANATION

_BUNDLE = click.option(
    "--bundle",
    "bundle_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Study bundle folder (made by 'xaistudy explain'): the ground truth.",
)


def _scoring_options(func):
    func = click.option(
        "--relies-on",
        default="4,5",
        show_default=True,
        help="Ratings that mean 'the model relies on it'.",
    )(func)
    func = click.option(
        "--not-relies-on",
        default="1,2",
        show_default=True,
        help="Ratings that mean 'the model does not rely on it'.",
    )(func)
    return func


@click.command()
@click.option("--db", "db_url", help="Study database URL (sqlite:///..., postgresql://...).")
@click.option(
    "--responses",
    type=click.Path(path_type=Path),
    help="Export folder (participants.csv, answers.csv, pages.csv) or one answers.csv.",
)
@_BUNDLE
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Report folder: CSV tables and report.html.",
)
@_scoring_options
@click.option(
    "--min-seconds",
    type=float,
    default=None,
    help="Exclude completions faster than this many seconds.",
)
@click.option(
    "--min-median-fraction",
    type=float,
    default=0.3,
    show_default=True,
    help="Without --min-seconds: exclude completions faster than this fraction "
    "of the median duration.",
)
@click.option(
    "--bootstrap",
    "n_boot",
    type=int,
    default=2000,
    show_default=True,
    help="Bootstrap resamples over participants.",
)
@click.option("--level", type=float, default=0.95, show_default=True, help="Interval level.")
@click.option(
    "--model",
    type=click.Choice(["auto", "bayes", "gee"]),
    default="auto",
    show_default=True,
    help="bayes: logistic mixed model (variational Bayes); gee: GEE logistic; "
    "auto: bayes up to 1,000 participants, else gee.",
)
@click.option(
    "--power-sims",
    type=int,
    default=0,
    show_default=True,
    help="Add a power curve (simulated studies per N) to the report; 0: none.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def analyze(
    db_url,
    responses,
    bundle_dir,
    out_dir,
    relies_on,
    not_relies_on,
    min_seconds,
    min_median_fraction,
    n_boot,
    level,
    model,
    power_sims,
    seed,
):
    """Score the responses against the bundle's ground truth and write the report."""
    from analysis.report import analyze as run
    from analysis.scoring import ScoringRule
    from xaistudy.too_fast import TooFastRule

    if (responses is None) == (db_url is None):
        raise UserError("give exactly one of --db URL and --responses CSV")
    if power_sims < 0:
        raise UserError(f"--power-sims must be >= 0, got {power_sims}")
    analysis = run(
        out_dir=out_dir,
        bundle_dir=bundle_dir,
        responses=responses if db_url is None else database_responses(db_url),
        rule=ScoringRule.parse(relies_on, not_relies_on),
        exclusions=TooFastRule(
            min_seconds, None if min_seconds is not None else min_median_fraction
        ),
        n_boot=n_boot,
        seed=seed,
        model=model,
        level=level,
        power_sims=power_sims,
    )
    click.echo(summary_lines(analysis))
    click.echo(f"report: {Path(out_dir) / 'report.html'}")


def summary_lines(analysis) -> str:
    """What ``xaistudy analyze`` (and the demo) print: accuracy per condition with its
    interval; for a study of a trial design per phase with its test against chance, and
    the gain over the control; for a verification study also the over- and under-reliance
    in the test; for a counterfactual-simulation study the gains from pre- to post-test."""
    from analysis.counterfactual_simulation import PairAnalysis
    from analysis.forward_simulation import SimulationAnalysis
    from analysis.verification import VerificationAnalysis

    trial_design = isinstance(analysis, SimulationAnalysis | VerificationAnalysis | PairAnalysis)
    excluded = (
        int(analysis.exclusions["n_excluded"].sum())
        if trial_design
        else int(analysis.scored.exclusions["n_excluded"].sum())
    )
    if not trial_design:
        lines = [f"{len(analysis.scored.participants)} participants analyzed, {excluded} excluded"]
        for _, row in analysis.tables.by_condition.iterrows():
            lines.append(
                f"  {row['condition']:<16} accuracy {row['accuracy']:.3f} "
                f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]  n={row['n']}"
            )
        return "\n".join(lines + questionnaire_lines(analysis.questionnaires))
    included = int(analysis.sample["included"].sum())
    if isinstance(analysis, PairAnalysis):
        design = "counterfactual simulation"
    elif isinstance(analysis, VerificationAnalysis):
        design = "verification"
    else:
        design = analysis.design.replace("-", " ")
    lines = [f"{included} participants analyzed, {excluded} excluded ({design})"]
    for _, row in analysis.accuracy.iterrows():
        lines.append(
            f"  {row['condition']:<16} {row['phase']:<8} accuracy {row['accuracy']:.3f} "
            f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]  n={row['participants']}  "
            f"p(chance)={row['p_chance']:.3g}"
        )
    if isinstance(analysis, PairAnalysis):
        return "\n".join(
            lines + _pair_lines(analysis) + questionnaire_lines(analysis.questionnaires)
        )
    if isinstance(analysis, VerificationAnalysis):
        for _, row in analysis.reliance[analysis.reliance["phase"] == "test"].iterrows():
            lines.append(
                f"  {row['condition']:<16} test     over-reliance {row['over_reliance']:.3f} "
                f"[{row['over_reliance_ci_low']:.3f}, {row['over_reliance_ci_high']:.3f}]  "
                f"under-reliance {row['under_reliance']:.3f} "
                f"[{row['under_reliance_ci_low']:.3f}, {row['under_reliance_ci_high']:.3f}]"
            )
    for _, row in analysis.utility.iterrows():
        lines.append(
            f"  {row['condition']:<16} gain over none {row['gain']:+.3f} "
            f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]  p={row['p_value']:.3g}"
        )
    lines += within_lines(analysis.within)
    return "\n".join(lines + questionnaire_lines(analysis.questionnaires))


def within_lines(within) -> list[str]:
    """A within-subjects study's contrasts with the reference and its period effect."""
    if within is None:
        return []
    lines = [f"within subjects (test trials, against {within.reference}):"]
    for _, row in within.contrasts.iterrows():
        odds = row.get("odds_ratio", row["gee_odds_ratio"])
        lines.append(
            f"  {row['condition']:<16} difference {row['difference']:+.3f} "
            f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]  odds ratio {odds:.2f}"
        )
    for _, row in within.periods.iloc[1:].iterrows():
        lines.append(
            f"  period {int(row['period']):<9} difference {row['difference']:+.3f} "
            f"[{row['difference_ci_low']:+.3f}, {row['difference_ci_high']:+.3f}] "
            "against period 1"
        )
    return lines


def questionnaire_lines(analysis) -> list[str]:
    """Each Likert item's mean per condition, and each pre/post change with its test."""
    if analysis is None or analysis.items.empty:
        return []
    lines = ["questionnaires (mean [interval] per condition):"]
    for (questionnaire, item, point), rows in analysis.items.groupby(
        ["questionnaire", "item", "point"], sort=False
    ):
        means = ", ".join(
            f"{r['condition']} {r['mean']:.2f} [{r['mean_ci_low']:.2f}, {r['mean_ci_high']:.2f}]"
            for _, r in rows.iterrows()
        )
        lines.append(f"  {questionnaire}.{item} at {point}: {means}")
    for _, r in analysis.change.iterrows():
        lines.append(
            f"  {r['questionnaire']}.{r['item']} {r['condition']:<16} change {r['pre']} -> "
            f"{r['post']} {r['change']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]  "
            f"Wilcoxon p={r['p_value']:.3g}  n={r['n']}"
        )
    return lines


def _pair_lines(analysis) -> list[str]:
    """A counterfactual-simulation study's gain per condition and utility over none."""
    lines = [
        f"  {row['condition']:<16} gain post - pre {row['gain']:+.3f} "
        f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
        for _, row in analysis.gain.iterrows()
    ]
    lines += [
        f"  {row['condition']:<16} utility (gain over none's) {row['utility']:+.3f} "
        f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]  p={row['p_value']:.3g}"
        for _, row in analysis.utility.iterrows()
    ]
    return lines


def database_responses(url: str):
    """The responses in the study database at ``url``, read through the server's export."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from analysis.load import responses_from_frames
    from study_server.export import export_frames

    try:
        frames = export_frames(url)
    except ArgumentError as exc:
        raise UserError(f"--db {url!r} is not a database URL: {exc}") from exc
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0]
        raise UserError(f"cannot read the study database at {url}: {reason}") from exc
    return responses_from_frames(frames, source=url)


@click.command()
@_BUNDLE
@click.option("--n", "n", type=int, default=240, show_default=True, help="Participants.")
@click.option(
    "--accuracy",
    default=None,
    help="Per-condition accuracy, e.g. baseline=0.7,concepts=0.6,counterfactuals=0.8 "
    "(none=: the control of a study of a trial design); a verification study takes "
    "--acceptance instead.",
)
@click.option(
    "--pre-accuracy",
    default=None,
    help="A counterfactual-simulation study's pre-test accuracy per condition, e.g. "
    "none=0.55,baseline=0.55 (default: --accuracy, no gain).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    help="Write the CSV export format here (no server).",
)
@click.option(
    "--acceptance",
    default=None,
    help="A verification study's participants per condition: the chances of a 'right' "
    "verdict when the model is right and when it is wrong, e.g. none=0.85/0.6,baseline=0.9/0.3.",
)
@click.option("--db", "db_url", help="Fill this study database through the real flow.")
@click.option("--url", help="Drive the running server at this URL over HTTP.")
@click.option(
    "--study",
    type=click.Path(path_type=Path),
    help="Study definition (TOML) for --db; the server's default when omitted.",
)
@click.option(
    "--ability-sd",
    type=float,
    default=0.1,
    show_default=True,
    help="Spread of per-participant accuracy around the condition's value.",
)
@click.option(
    "--attention-fail",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of participants who fail the attention check.",
)
@click.option(
    "--too-fast",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of participants who finish too fast (--out only).",
)
@click.option(
    "--scale-offset",
    default=None,
    help="Questionnaire answers (--db, --url): each condition's mean distance from a "
    "scale's midpoint, e.g. none=-0.4,baseline=0.2 (0 when not named).",
)
@click.option(
    "--scale-change",
    default=None,
    help="Questionnaire answers (--db, --url): each condition's change from the first to "
    "the last point of a pre/post block, e.g. none=0.4,baseline=1 (0 when not named).",
)
@click.option(
    "--practice",
    type=float,
    default=0.0,
    show_default=True,
    help="A within-subjects study (--db, --url): the accuracy gained in each block after "
    "the first (a period effect).",
)
@_scoring_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
def simulate(
    bundle_dir,
    n,
    accuracy,
    acceptance,
    pre_accuracy,
    out_dir,
    db_url,
    url,
    study,
    ability_sd,
    attention_fail,
    too_fast,
    scale_offset,
    scale_change,
    practice,
    relies_on,
    not_relies_on,
    seed,
    overwrite,
):
    """Simulated participants with known per-condition accuracies."""
    from analysis import simulate as sim
    from analysis.load import load_bundle
    from analysis.scoring import ScoringRule
    from simulation import runs

    if accuracy is None and acceptance is None:
        raise UserError(
            "give --accuracy (the rating and forward-simulation designs) or --acceptance "
            "(the verification design)"
        )
    targets = [t for t in (out_dir, db_url, url) if t is not None]
    if len(targets) != 1:
        raise UserError("give exactly one of --out DIR, --db URL and --url URL")
    bundle = load_bundle(bundle_dir)
    conditions = [*bundle.conditions, NO_EXPLANATION]

    def per_condition(text, option):  # a shift of at most the 7-point scale's width
        return {} if text is None else sim.parse_condition_values(text, conditions, option, -6, 6)

    spec = sim.SimulationSpec(
        accuracy=sim.parse_accuracy(accuracy, conditions) if accuracy else {},
        acceptance=sim.parse_acceptance(acceptance, conditions) if acceptance else {},
        pre_accuracy=None if pre_accuracy is None else sim.parse_accuracy(pre_accuracy, conditions),
        n=n,
        seed=seed,
        ability_sd=ability_sd,
        attention_fail=attention_fail,
        too_fast=too_fast,
        practice=practice,
        rule=ScoringRule.parse(relies_on, not_relies_on),
        scales=sim.ScaleAnswers(
            offset=per_condition(scale_offset, "--scale-offset"),
            change=per_condition(scale_change, "--scale-change"),
        ),
    )
    if out_dir is not None and spec.acceptance:
        raise UserError(
            "--acceptance needs --db or --url: a verification study's trials are walked"
        )
    if out_dir is not None:
        frames = sim.simulate_frames(bundle, spec, runs.answered_pages())
        sim.write_frames(frames, out_dir, overwrite=overwrite)
        counts = frames["participants"]["condition"].value_counts()
        click.echo(
            f"{n} simulated participants written to {out_dir}: "
            + ", ".join(f"{c} {counts.get(c, 0)}" for c in spec.accuracy)
        )
        return
    if too_fast:
        raise UserError("--too-fast needs --out: through a server, durations are real")
    if db_url is not None:
        summary = runs.simulate_database(bundle_dir, db_url, spec, study=study)
        where = db_url
    else:
        summary = runs.simulate_http(url, bundle, spec, study=study)
        where = url
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(summary.statuses.items()))
    conditions = ", ".join(f"{k} {v}" for k, v in sorted(summary.conditions.items()))
    click.echo(f"{n} simulated participants through {where}: {statuses}; {conditions}")
    click.echo("their durations are real (fractions of a second): analyze with --min-seconds 0")


@click.command()
@click.option(
    "--accuracy",
    required=True,
    help="Expected accuracy per condition, e.g. baseline=0.7,concepts=0.75.",
)
@click.option(
    "--n",
    "n",
    type=int,
    required=True,
    help="Participants per condition (--within: participants, each in every condition).",
)
@click.option("--sims", type=int, default=500, show_default=True, help="Simulated studies.")
@click.option(
    "--attributes",
    "--trials",
    "n_attributes",
    type=int,
    default=7,
    show_default=True,
    help="Answers per participant and condition: attributes rated, or test trials.",
)
@click.option("--ability-sd", type=float, default=0.1, show_default=True)
@click.option(
    "--within",
    is_flag=True,
    help="A within-subjects study: every participant in every condition, paired tests.",
)
@click.option(
    "--correlation",
    type=float,
    default=0.5,
    show_default=True,
    help="With --within: how much of a participant's ability is shared over conditions.",
)
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option(
    "--curve",
    type=click.Path(path_type=Path),
    help="Also write a power curve over N as this PNG (its table beside it as CSV).",
)
@click.option("--seed", type=int, default=0, show_default=True)
def power(accuracy, n, sims, n_attributes, ability_sd, within, correlation, alpha, curve, seed):
    """Probability that a study with N per condition (--within: N participants in every
    condition) detects the differences."""
    from analysis.power import default_ns, power_analysis, power_curve
    from analysis.simulate import parse_accuracy
    from xaistudy.vocabulary import ALL_CONDITIONS, NO_EXPLANATION

    # every design's conditions: the explanation-free control and every explanation
    targets = parse_accuracy(accuracy, [NO_EXPLANATION, *ALL_CONDITIONS])
    options = dict(
        n_attributes=n_attributes,
        ability_sd=ability_sd,
        alpha=alpha,
        within=within,
        correlation=correlation,
    )
    if correlation != 0.5 and not within:
        raise UserError("--correlation goes with --within (participants in every condition)")
    each = "participants, each in every condition" if within else "per condition"
    table = power_analysis(targets, n, sims=sims, seed=seed, **options)
    for _, row in table.iterrows():
        click.echo(
            f"{row['condition_a']} vs {row['condition_b']}: difference "
            f"{row['difference']:+.3f}, N={n} {each} -> power {row['power']:.2f} "
            f"[{row['power_ci_low']:.2f}, {row['power_ci_high']:.2f}] ({sims} simulations)"
        )
    if curve is not None:
        from analysis.plots import power_plot

        if curve.suffix.lower() != ".png":
            raise UserError(f"--curve {curve} must name a .png file")
        curve_table = power_curve(targets, default_ns(n), sims=sims, seed=seed, **options)
        curve.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(curve.with_suffix(".csv"), curve_table.to_csv(index=False))
        atomic_write_bytes(curve, power_plot(curve_table, within=within))
        click.echo(f"power curve: {curve}")


COMMANDS = [analyze, simulate, power]
