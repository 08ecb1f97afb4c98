"""``xaistudy analyze``: every table as CSV and one self-contained ``report.html``.

Files written to the report folder (each atomically: a temporary name, then renamed;
``report.html`` last, so a folder with it is complete): ``accuracy_by_condition.csv``,
``accuracy_by_attribute.csv``, ``accuracy_by_condition_attribute.csv``,
``participant_accuracy.csv``, ``trivial_strategies.csv``, ``exclusions.csv``,
``sample.csv``, ``comparisons.csv``, ``mixed_model.csv``, ``page_times.csv`` (when page
timings exist), ``power.csv`` (when asked) and ``report.html``. docs/analysis.md
describes every column. A forward-simulation study's folder holds instead
``simulation_accuracy.csv``, ``simulation_utility.csv``, ``exclusions.csv``,
``sample.csv`` and ``report.html`` (analysis/forward_simulation.py); a verification
study's ``verification_accuracy.csv``, ``verification_reliance.csv``,
``verification_utility.csv``, ``exclusions.csv``, ``sample.csv`` and ``report.html``
(analysis/verification.py); a counterfactual-simulation study's ``pairs_accuracy.csv``,
``pairs_gain.csv``, ``pairs_participants.csv``, ``pairs_utility.csv``,
``pairs_by_flip.csv``, ``exclusions.csv``, ``sample.csv`` and ``report.html``
(analysis/counterfactual_simulation.py). A study that asked questionnaires adds, in any design,
``questionnaire_items.csv``, ``questionnaire_change.csv`` (pre/post blocks),
``questionnaire_between.csv`` and ``questionnaire_text.csv`` (analysis/questionnaires.py).
"""

from __future__ import annotations

import base64
import dataclasses
import html
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from analysis import plots
from analysis.counterfactual_simulation import PHASES as PAIR_PHASES
from analysis.counterfactual_simulation import PairAnalysis, analyze_pairs
from analysis.forward_simulation import SimulationAnalysis, analyze_trials
from analysis.load import Bundle, Responses, load_bundle, read_export
from analysis.mixed_model import ModelFit, fit_model
from analysis.questionnaires import QuestionnaireAnalysis, analyze_questionnaires
from analysis.scoring import (
    SCALE,
    TRIVIAL_STRATEGIES,
    ScoredStudy,
    ScoringRule,
    score_study,
    trivial_strategies,
    trivial_strategy_ratings,
)
from analysis.statistics import (
    AccuracyTables,
    accuracy_tables,
    bootstrap,
    compare_conditions,
    participant_matrix,
)
from analysis.technical import (
    accuracy_beside_scores,
    correlation_note,
    rank_correlations,
    score_columns,
)
from analysis.verification import VerificationAnalysis, analyze_verification
from analysis.within import WithinAnalysis
from xaistudy.errors import UserError
from xaistudy.files import Stopwatch, atomic_write_text
from xaistudy.too_fast import TooFastRule
from xaistudy.vocabulary import COUNTERFACTUAL_SIMULATION, VERIFICATION


@dataclasses.dataclass
class Analysis:
    """Everything the report shows; ``timings`` holds seconds per stage."""

    scored: ScoredStudy
    tables: AccuracyTables
    comparisons: pd.DataFrame
    model: ModelFit
    page_times: pd.DataFrame | None
    power: pd.DataFrame | None
    timings: dict[str, float]
    level: float = 0.95
    trivial: pd.DataFrame | None = None  # accuracy of answering the same to everything
    questionnaires: QuestionnaireAnalysis | None = None


def page_time_table(responses: Responses, scored: ScoredStudy) -> pd.DataFrame | None:
    """Median and quartiles of seconds per page and condition, included participants only."""
    pages = responses.pages
    if pages is None or pages.empty:
        return None
    pages = pages[pages["participant_id"].isin(scored.participants["participant_id"])]
    pages = pages.dropna(subset=["seconds"])
    if pages.empty:
        return None
    # Pages in the order participants typically reach them (mean rank within participant).
    rank = pages.groupby("participant_id", sort=False).cumcount()
    order = list(rank.groupby(pages["page"]).mean().sort_values().index)
    grouped = pages.groupby(["page", "condition"])["seconds"]
    table = grouped.agg(
        median="median",
        q25=lambda s: s.quantile(0.25),
        q75=lambda s: s.quantile(0.75),
        n="count",
    ).reset_index()
    table["page"] = pd.Categorical(table["page"], categories=order, ordered=True)
    return table.sort_values(["page", "condition"]).reset_index(drop=True).astype({"page": str})


def run_analysis(
    responses: Responses,
    bundle: Bundle,
    rule: ScoringRule | None = None,
    exclusions: TooFastRule | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    model: str = "auto",
    level: float = 0.95,
    power: pd.DataFrame | None = None,
    watch: Stopwatch | None = None,
) -> Analysis:
    """Score, bootstrap, compare and fit the model; no files written.

    Each stage is timed on ``watch`` (a new one if None), whose seconds become the
    analysis's ``timings``."""
    if n_boot < 100:
        raise UserError(f"--bootstrap must be at least 100 resamples, got {n_boot}")
    if not 0.5 <= level < 1:
        raise UserError(f"--level must be in [0.5, 1), got {level}")
    watch = watch or Stopwatch()
    progress = tqdm(total=4, desc="analysis", unit="stage", leave=False)

    with watch("score"):
        scored = score_study(responses, bundle, rule, exclusions)
    progress.update()

    with watch("bootstrap"):
        matrix = participant_matrix(scored)
        boot = bootstrap(matrix, n_boot=n_boot, seed=seed)
        attributes = scored.attributes
        relevant = dict(zip(attributes["attribute"], attributes["relevant"], strict=True))
        tables = accuracy_tables(matrix, boot, relevant, level)
        comparisons = compare_conditions(tables, boot, scored.conditions, level)
    progress.update()

    with watch("model"):
        fit = fit_model(scored, model)
    comparisons = comparisons.merge(fit.odds_ratios, on=["condition_a", "condition_b"], how="left")
    progress.update()

    with watch("page_times"):
        page_times = page_time_table(responses, scored)
    progress.update()
    progress.close()
    trivial = trivial_strategies(scored)
    return Analysis(
        scored, tables, comparisons, fit, page_times, power, watch.seconds, level, trivial
    )


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _p_value(value: float) -> str:
    if pd.isna(value):
        return ""
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    formatters = {c: _p_value for c in frame.columns if c in ("p_value", "p_holm")}
    table = frame.to_html(
        index=False,
        border=0,
        classes="t",
        na_rep="",
        formatters=formatters,
        float_format=lambda v: f"{v:.{digits}f}",
    )
    return f"<div class='wide'>{table}</div>"


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1150px;color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2.2rem}p.note{color:#555;font-size:.9rem}
table.t{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
table.t th,table.t td{padding:.25rem .6rem;border-bottom:1px solid #e4e4e4;text-align:right}
table.t th{background:#f5f5f5}table.t td:first-child,table.t th:first-child{text-align:left}
img{max-width:100%;height:auto}.wide{overflow-x:auto}.grid{display:flex;gap:2rem;flex-wrap:wrap;align-items:flex-start}
"""


def _trivial_section(analysis: Analysis) -> list[str]:
    """Each condition's accuracy beside what answering the same to everything scores."""
    if analysis.trivial is None:
        return []
    ratings = trivial_strategy_ratings(analysis.scored.rule)
    table = analysis.tables.by_condition[["condition", "accuracy"]].merge(
        analysis.trivial, on="condition", how="left"
    )
    answers = "; ".join(
        f"<code>{name}</code>: {html.escape(words)} (rating {ratings[name]})"
        for name, words in TRIVIAL_STRATEGIES
    )
    return [
        "<h3>Against trivial strategies</h3>",
        "<p>What a participant would score by giving the same answer to every attribute, "
        "against the same answer key: an accuracy near one of these says the answer key "
        "can be met without understanding the model (for instance when most attributes "
        f"are relevant), whatever its interval. {answers}.</p>",
        _table(table),
    ]


def _technical_section(analysis: Analysis, bundle: Bundle) -> list[str]:
    """Human accuracy beside the attribution methods' technical scores (analysis.technical)."""
    table = accuracy_beside_scores(analysis.tables.by_condition, bundle.technical)
    if table.empty:
        return []
    scores = score_columns(table)
    correlations = rank_correlations(table)
    return [
        "<h2>Human accuracy beside the technical scores</h2>",
        "<p>For each attribution condition, the participants' accuracy (with its interval) "
        "beside the technical scores of its method on the scenes it showed (docs/methods.md; "
        "larger is better for every score). Below, Spearman's rank correlation of accuracy "
        f"and each score across conditions. {html.escape(correlation_note(correlations))}</p>",
        _table(table),
        _img(plots.technical_plot(table, scores), "accuracy against each technical score"),
        _table(correlations),
    ]


def calibration_section(calibration: pd.DataFrame, curve: pd.DataFrame, level: int) -> list[str]:
    """Stated confidence against accuracy in the test, where the study asked it."""
    if calibration.empty:
        return []
    return [
        "<h2>Confidence and accuracy in the test</h2>",
        "<p>The five confidence points read as the chances 0.5, 0.625, 0.75, 0.875 and 1.0 "
        "of being right (two balanced answers: a guess is right half the time). "
        "<code>overconfidence</code> is the mean stated chance minus the accuracy, with a "
        f"{level}% bootstrap interval over participants: above 0 the participants trusted "
        "their answers more than they deserved (analysis/calibration.py).</p>",
        _table(calibration),
        "<p>Accuracy at each confidence point (the calibration curve).</p>",
        _table(curve),
    ]


def questionnaire_section(analysis: QuestionnaireAnalysis | None) -> list[str]:
    """The questionnaires' tables: items per condition, pre/post changes, the tests
    between conditions; the free text is in its own file."""
    if analysis is None:
        return []
    level = round(analysis.level * 100)
    parts = [
        "<h2>Questionnaires</h2>",
        f"<p>Each Likert item's mean and median answer per condition and point, with "
        f"{level}% percentile bootstrap intervals over participants (resampled within the "
        "condition).</p>",
        _table(analysis.items, digits=2),
    ]
    if not analysis.change.empty:
        parts += [
            "<h3>Change from before to after (pre/post blocks)</h3>",
            f"<p>Each participant's answer at <code>post</code> minus at <code>pre</code>: "
            f"<code>change</code> is its mean with a {level}% bootstrap interval, "
            "<code>wilcoxon</code> and <code>p_value</code> a Wilcoxon signed-rank test of "
            "the changes (empty when none changed).</p>",
            _table(analysis.change, digits=2),
        ]
    parts += [
        "<h3>Between conditions</h3>",
        "<p>A Kruskal-Wallis test of each item's answers across the conditions.</p>",
        _table(analysis.between),
        f"<p class='note'>{len(analysis.texts)} free-text answers are listed in "
        "<code>questionnaire_text.csv</code>.</p>",
    ]
    return parts


def questionnaire_frames(analysis: QuestionnaireAnalysis | None) -> dict[str, pd.DataFrame]:
    if analysis is None:
        return {}
    frames = {
        "questionnaire_items": analysis.items,
        "questionnaire_between": analysis.between,
        "questionnaire_text": analysis.texts,
    }
    if not analysis.change.empty:
        frames["questionnaire_change"] = analysis.change
    return frames


def render_html(analysis: Analysis, bundle: Bundle, source: str) -> str:
    """The self-contained report: tables inline, plots as base64 PNG."""
    scored, tables, fit = analysis.scored, analysis.tables, analysis.model
    names = dict(zip(scored.attributes["attribute"], scored.attributes["name"], strict=True))
    guess = (len(scored.rule.relies_on) + len(scored.rule.not_relies_on)) / 2 / len(SCALE)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    parts: list[str] = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>xaistudy analysis</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Study analysis: which attributes does the model rely on?</h1>",
        f"<p class='note'>Responses: {html.escape(source)}<br>Bundle: "
        f"{html.escape(str(bundle.path))}<br>Written {created}. Scoring: "
        f"{html.escape(scored.rule.describe())}.</p>",
    ]

    included = len(scored.participants)
    parts += [
        "<h2>Exclusions</h2>",
        f"<p>{scored.n_recorded} participants recorded, {included} included. Each excluded "
        "participant is counted under the first reason that applies (<code>n_excluded</code>); "
        "<code>n_matching</code> counts everyone meeting the criterion.</p>",
        _table(scored.exclusions),
    ]
    if not scored.exclusions["applicable"].any():
        parts.append(
            "<p class='note'>Only answers were given (no participants table): the "
            "exclusions are not applicable.</p>"
        )

    by_condition = tables.by_condition
    parts += [
        "<h2>Sample and accuracy per condition</h2>",
        _table(scored.sample),
        f"<p>Accuracy is the share of correct ratings; {round(analysis.level * 100)}% "
        "intervals are percentile bootstrap intervals over participants (resampled within "
        "each condition).</p>",
        _table(by_condition),
        *_trivial_section(analysis),
        _img(
            plots.accuracy_plot(
                by_condition, tables.by_condition_attribute, names, guess, analysis.trivial
            ),
            "accuracy by condition and attribute",
        ),
        *_technical_section(analysis, bundle),
        "<h2>Condition comparisons</h2>",
        "<p><code>difference</code> = accuracy of <code>condition_a</code> minus "
        "<code>condition_b</code> with its bootstrap interval; Cohen's h on the two "
        "accuracies; Welch t-test on per-participant accuracy (p Holm-adjusted over pairs); "
        "odds ratio of a correct rating from the model below (averaged over attributes on "
        "the log-odds scale).</p>",
        _table(analysis.comparisons.drop(columns=["accuracy_a", "accuracy_b"])),
        "<h2>Accuracy by condition and attribute</h2>",
        _table(tables.by_condition_attribute),
        "<h3>Accuracy per attribute (conditions pooled)</h3>",
        _table(tables.by_attribute),
        "<h2>Ratings per attribute and condition</h2>",
        _img(
            plots.rating_plot(scored.answers, scored.attributes, scored.conditions),
            "rating distributions",
        ),
    ]

    truth = bundle.ground_truth
    parts += [
        "<h2>Ground truth</h2>",
        "<p>What the answers are scored against: for each attribute, whether the model "
        "relies on it, measured by redrawing the attribute's factors in test scenes.</p>",
        "<div class='grid'><div>",
        _table(bundle.attributes.rename(columns={"relevant": "relies_on"})),
        "</div><div>",
        _img(plots.ground_truth_plot(truth), "ground truth effects"),
        "</div></div>",
        _table(truth),
    ]
    if bundle.ground_truth_rule.description:
        parts.append(
            f"<p class='note'>Rule: {html.escape(bundle.ground_truth_rule.description)}</p>"
        )
    accuracy = bundle.model_card.accuracy
    card = pd.DataFrame({"split": list(accuracy), "accuracy": list(accuracy.values())})
    parts += ["<h3>The model</h3>", _table(card)]
    parts.append(
        f"<p class='note'>Ceiling accuracy (best possible on these data): "
        f"{bundle.model_card.ceiling_accuracy}</p>"
    )

    re_text = (
        f" Participant random-intercept sd (log-odds): {fit.random_effect_sd:.3f}."
        if fit.random_effect_sd is not None
        else ""
    )
    parts += [
        "<h2>Logistic model of a correct rating</h2>",
        f"<p>{html.escape(fit.description)}{re_text} Fitted on {fit.n_observations} answers "
        f"of {fit.n_participants} participants in {fit.seconds:.1f} s.</p>",
        _table(fit.table),
    ]
    if fit.notes:
        notes = "; ".join(html.escape(n) for n in fit.notes)
        parts.append(f"<p class='note'>Fitting notes: {notes}</p>")

    parts += questionnaire_section(analysis.questionnaires)
    parts.append("<h2>Time spent per page</h2>")
    if analysis.page_times is None:
        parts.append("<p class='note'>No page timings in these responses.</p>")
    else:
        parts += [
            "<p>Seconds per page, included participants (median and quartiles).</p>",
            _img(plots.page_time_plot(analysis.page_times, scored.conditions), "time per page"),
            _table(analysis.page_times, digits=1),
        ]

    if analysis.power is not None:
        parts += [
            "<h2>Power by simulation</h2>",
            "<p>Share of simulated studies (accuracies as observed) in which the Welch test "
            "detects the difference at alpha 0.05, against participants per condition.</p>",
            _img(plots.power_plot(analysis.power), "power curve"),
            _table(analysis.power),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


# What the report of each trial design (but verification, its own) says: (title,
# question, the plot's measure, what is correct, the phases).
DESIGN_WORDS = {
    "forward-simulation": (
        "forward simulation",
        "can participants predict the model?",
        "simulation accuracy (model's decision predicted)",
        "A trial is correct when the prediction is the model's decision (not the true "
        "animal); the scenes are balanced over the model's correctness, so naming the true "
        "animal scores 0.5.",
        "Learning trials were answered with the condition's explanation (and the model's "
        "decision as feedback after each); test trials without either.",
    ),
    "distinction": (
        "distinction",
        "can participants tell the model's explanation from another?",
        "distinction accuracy (model's explanation picked)",
        "A trial is correct when the participant picked the map that explains the model's "
        "decision, not the one for the other animal; each side holds it in half the trials "
        "and the scenes are balanced over the model's decisions, so chance is 0.5.",
        "Learning trials were followed by which map was the model's; test trials were not.",
    ),
}


def render_simulation_html(analysis: SimulationAnalysis, bundle: Bundle, source: str) -> str:
    """A trial design's report: accuracy per condition and phase against chance, the
    utility over the control where the study has one."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    level = round(analysis.level * 100)
    title, question, measure, correct, phases = DESIGN_WORDS[analysis.design]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>xaistudy analysis: {title}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Study analysis: {question}</h1>",
        f"<p class='note'>Responses: {html.escape(source)}<br>Bundle: "
        f"{html.escape(str(bundle.path))}<br>Written {created}. {correct}</p>",
        "<h2>Exclusions</h2>",
        _table(analysis.exclusions),
        "<h2>Sample</h2>",
        _table(analysis.sample),
        f"<h2>{title.capitalize()} accuracy per condition and phase</h2>",
        f"<p>{phases} {level}% intervals are percentile bootstrap intervals over "
        "participants; <code>p_chance</code> is a one-sample t-test of the participants' "
        "accuracies against 0.5.</p>",
        _table(analysis.accuracy),
        _img(
            plots.simulation_plot(analysis.accuracy, analysis.conditions, measure),
            f"{title} accuracy per condition, learning and test",
        ),
        "<h2>Utility: test accuracy gained over the control</h2>",
        *_utility_section(analysis.utility, level),
        *within_section(analysis.within),
        *calibration_section(analysis.calibration, analysis.calibration_curve, level),
        *questionnaire_section(analysis.questionnaires),
        "</body></html>",
    ]
    return "\n".join(parts)


def within_section(within: WithinAnalysis | None) -> list[str]:
    """A within-subjects study's section: accuracy per condition, the contrasts with the
    reference within participants, the period (order) effect and the orders walked."""
    if within is None:
        return []
    level = round(within.level * 100)
    return [
        "<h2>Within subjects: conditions compared within participants</h2>",
        "<p>Each participant answered the test trials of several conditions, one block "
        "each, in an order from a Williams square (docs/designs/within-subjects.md). "
        f"Accuracy on the test trials per condition, with {level}% percentile bootstrap "
        "intervals over participants (each resampled with all their trials).</p>",
        _table(within.accuracy),
        f"<p>Each condition against <code>{html.escape(within.reference)}</code>: "
        "<code>difference</code> in accuracy with a paired bootstrap interval (the same "
        "resampled participants for both); <code>odds_ratio</code> from "
        f"{html.escape(within.model)}; the <code>gee_</code> columns from the GEE.</p>",
        _table(within.contrasts),
        "<h3>Period (order) effect</h3>",
        "<p>Accuracy per block position (<code>period</code>), its difference from the first "
        "block (paired bootstrap) and the period's odds ratio in the same models: practice "
        "(above 1) or fatigue (below), which the counterbalanced orders keep out of the "
        "condition contrasts.</p>",
        _table(within.periods),
        "<h3>Orders walked</h3>",
        _table(within.orders),
    ]


def within_frames(within: WithinAnalysis | None) -> dict[str, pd.DataFrame]:
    """A within-subjects study's tables, as the report folder's CSV files."""
    if within is None:
        return {}
    return {
        "within_accuracy": within.accuracy,
        "within_contrasts": within.contrasts,
        "within_periods": within.periods,
        "within_orders": within.orders,
    }


def _utility_section(utility: pd.DataFrame, level: int) -> list[str]:
    """The gain over the control of a trial design's report, or why there is none."""
    if utility.empty:
        return [
            "<p>The study has no control condition <code>none</code> (or only it): there is "
            "no gain to compute.</p>"
        ]
    return [
        f"<p><code>gain</code> is the condition's test accuracy minus the control's, "
        f"with a {level}% bootstrap interval; <code>odds_ratio</code> and "
        "<code>p_value</code> come from a logistic GEE of the test trials on the "
        "condition (participants as clusters, robust standard errors).</p>",
        _table(utility),
    ]


def render_verification_html(analysis: VerificationAnalysis, bundle: Bundle, source: str) -> str:
    """The verification report: accuracy and reliance per condition and phase, the gain."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    level = round(analysis.level * 100)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>xaistudy analysis: verification</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Study analysis: can participants tell when the model is right?</h1>",
        f"<p class='note'>Responses: {html.escape(source)}<br>Bundle: "
        f"{html.escape(str(bundle.path))}<br>Written {created}. A trial shows the model's "
        "decision; it is correct when the participant's verdict (right or wrong) matches "
        "whether the decision is the true animal. The scenes are balanced over the model's "
        "correctness, so accepting (or rejecting) every decision scores 0.5.</p>",
        "<h2>Exclusions</h2>",
        _table(analysis.exclusions),
        "<h2>Sample</h2>",
        _table(analysis.sample),
        "<h2>Verification accuracy per condition and phase</h2>",
        f"<p>Both phases show the condition's explanation with the decision; learning "
        f"trials are followed by feedback (whether the model was right), test trials are "
        f"not. {level}% intervals are percentile bootstrap intervals over participants; "
        "<code>p_chance</code> is a one-sample t-test of the participants' accuracies "
        "against 0.5.</p>",
        _table(analysis.accuracy),
        _img(
            plots.simulation_plot(
                analysis.accuracy, analysis.conditions, "verification accuracy (verdict right)"
            ),
            "verification accuracy per condition, learning and test",
        ),
        "<h2>Reliance on the model</h2>",
        "<p><code>over_reliance</code>: the share of <em>right</em> verdicts on the scenes "
        "where the model is wrong (accepting its errors); <code>under_reliance</code>: the "
        "share of <em>wrong</em> verdicts where it is right (rejecting its correct "
        f"decisions); each with a {level}% bootstrap interval over participants.</p>",
        _table(analysis.reliance),
        _img(
            plots.reliance_plot(analysis.reliance, analysis.conditions),
            "over- and under-reliance per condition in the test",
        ),
        "<h2>Utility: test accuracy gained over the control</h2>",
        *_utility_section(analysis.utility, level),
        *within_section(analysis.within),
        *calibration_section(analysis.calibration, analysis.calibration_curve, level),
        *questionnaire_section(analysis.questionnaires),
        "</body></html>",
    ]
    return "\n".join(parts)


def render_pairs_html(analysis: PairAnalysis, bundle: Bundle, source: str) -> str:
    """The counterfactual-simulation report: accuracy per condition and phase, the gain
    from pre-test to post-test, the utility, the flipping and non-flipping pairs."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    level = round(analysis.level * 100)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>xaistudy analysis: counterfactual simulation</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Study analysis: can participants predict what a change does to the model?</h1>",
        f"<p class='note'>Responses: {html.escape(source)}<br>Bundle: "
        f"{html.escape(str(bundle.path))}<br>Written {created}. A pair trial is correct when "
        "the prediction is the model's decision on the changed scene; half of each test's "
        "pairs flip the model's decision, so answering 'it stays' (or 'it turns') always "
        "scores 0.5.</p>",
        "<h2>Exclusions</h2>",
        _table(analysis.exclusions),
        "<h2>Sample</h2>",
        _table(analysis.sample),
        "<h2>Accuracy per condition and phase</h2>",
        f"<p>The pre-test came before any explanation, the learning trials with the "
        f"condition's explanation (and the model's decision as feedback), the post-test "
        f"without either. {level}% intervals are percentile bootstrap intervals over "
        "participants.</p>",
        _table(analysis.accuracy),
        _img(
            plots.simulation_plot(
                analysis.accuracy,
                analysis.conditions,
                "accuracy (model's decision predicted)",
                PAIR_PHASES,
            ),
            "accuracy per condition: pre-test, learning, post-test",
        ),
        "<h2>Gain from pre-test to post-test</h2>",
        f"<p>Per participant, post-test accuracy minus pre-test accuracy; per condition the "
        f"mean with a {level}% bootstrap interval.</p>",
        _table(analysis.gain),
        "<h2>Utility: gain over the control</h2>",
    ]
    if analysis.utility.empty:
        parts.append(
            "<p>The study has no control condition <code>none</code> (or only it): there is "
            "no gain over it to compute.</p>"
        )
    else:
        parts += [
            f"<p><code>utility</code> is the condition's mean gain minus the control's, with "
            f"a {level}% bootstrap interval; <code>odds_ratio</code> and <code>p_value</code> "
            "are those of the condition x post-test interaction in a logistic GEE of the "
            "pre- and post-test trials (participants as clusters, robust standard errors): "
            "how much more the odds of a correct prediction grew than the control's.</p>",
            _table(analysis.utility),
        ]
    parts += [
        "<h2>Pairs whose change flips the model's decision, and pairs whose change does not</h2>",
        _table(analysis.by_flip),
        *questionnaire_section(analysis.questionnaires),
        "</body></html>",
    ]
    return "\n".join(parts)


def _write_folder(out_dir: Path, frames: dict[str, pd.DataFrame], render) -> Path:
    """Write ``frames`` as CSV tables, then ``render()``'s ``report.html`` (last), into
    ``out_dir``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = out_dir / "report.html"
    if stale.exists():
        stale.unlink()  # the folder is incomplete until the new report is written
    for name, frame in frames.items():
        atomic_write_text(out_dir / f"{name}.csv", frame.to_csv(index=False))
    atomic_write_text(out_dir / "report.html", render())
    return out_dir / "report.html"


def write_simulation_report(
    analysis: SimulationAnalysis, bundle: Bundle, source: str, out_dir: Path
) -> Path:
    """Write the forward-simulation tables and ``report.html`` (last) into ``out_dir``."""
    frames = {
        "simulation_accuracy": analysis.accuracy,
        "simulation_utility": analysis.utility,
        "calibration": analysis.calibration,
        "calibration_curve": analysis.calibration_curve,
        "exclusions": analysis.exclusions,
        "sample": analysis.sample,
        **questionnaire_frames(analysis.questionnaires),
        **within_frames(analysis.within),
    }
    return _write_folder(out_dir, frames, lambda: render_simulation_html(analysis, bundle, source))


def write_verification_report(
    analysis: VerificationAnalysis, bundle: Bundle, source: str, out_dir: Path
) -> Path:
    """Write the verification tables and ``report.html`` (last) into ``out_dir``."""
    frames = {
        "verification_accuracy": analysis.accuracy,
        "verification_reliance": analysis.reliance,
        "verification_utility": analysis.utility,
        "calibration": analysis.calibration,
        "calibration_curve": analysis.calibration_curve,
        "exclusions": analysis.exclusions,
        "sample": analysis.sample,
        **questionnaire_frames(analysis.questionnaires),
        **within_frames(analysis.within),
    }
    return _write_folder(
        out_dir, frames, lambda: render_verification_html(analysis, bundle, source)
    )


def write_pairs_report(analysis: PairAnalysis, bundle: Bundle, source: str, out_dir: Path) -> Path:
    """Write the counterfactual-simulation tables and ``report.html`` (last) into ``out_dir``."""
    frames = {
        "pairs_accuracy": analysis.accuracy,
        "pairs_gain": analysis.gain,
        "pairs_participants": analysis.participants,
        "pairs_utility": analysis.utility,
        "pairs_by_flip": analysis.by_flip,
        "exclusions": analysis.exclusions,
        "sample": analysis.sample,
        **questionnaire_frames(analysis.questionnaires),
    }
    return _write_folder(out_dir, frames, lambda: render_pairs_html(analysis, bundle, source))


def write_report(analysis: Analysis, bundle: Bundle, source: str, out_dir: Path) -> Path:
    """Write the CSV tables and ``report.html`` (last) into ``out_dir``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = out_dir / "report.html"
    if stale.exists():
        stale.unlink()  # the folder is incomplete until the new report is written
    frames = {
        "accuracy_by_condition": analysis.tables.by_condition,
        "accuracy_by_attribute": analysis.tables.by_attribute,
        "accuracy_by_condition_attribute": analysis.tables.by_condition_attribute,
        "participant_accuracy": analysis.tables.participant_accuracy,
        "trivial_strategies": analysis.trivial,
        "exclusions": analysis.scored.exclusions,
        "sample": analysis.scored.sample,
        "comparisons": analysis.comparisons,
        "mixed_model": analysis.model.table,
    }
    frames = {name: frame for name, frame in frames.items() if frame is not None}
    if analysis.page_times is not None:
        frames["page_times"] = analysis.page_times
    if analysis.power is not None:
        frames["power"] = analysis.power
    frames.update(questionnaire_frames(analysis.questionnaires))
    technical = accuracy_beside_scores(analysis.tables.by_condition, bundle.technical)
    if not technical.empty:
        frames["technical_scores"] = technical
        frames["technical_correlations"] = rank_correlations(technical)
    for name, frame in frames.items():
        atomic_write_text(out_dir / f"{name}.csv", frame.to_csv(index=False))
    atomic_write_text(out_dir / "report.html", render_html(analysis, bundle, source))
    return out_dir / "report.html"


def analyze(
    out_dir: Path,
    bundle_dir: Path,
    responses: Responses | Path,
    rule: ScoringRule | None = None,
    exclusions: TooFastRule | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    model: str = "auto",
    level: float = 0.95,
    power_sims: int = 0,
) -> Analysis | SimulationAnalysis | VerificationAnalysis | PairAnalysis:
    """Load, analyze and write the report folder; returns the analysis (with timings).

    ``responses``: read already, or an export folder or ``answers.csv`` to read. The
    responses of a trial design's study (trials, no ratings) get the design's own analysis
    (:func:`analysis.forward_simulation.analyze_trials`,
    :func:`analysis.verification.analyze_verification`,
    :func:`analysis.counterfactual_simulation.analyze_pairs`); ``rule``, ``model`` and
    ``power_sims`` are the rating design's.
    """
    watch = Stopwatch()
    with watch("load"):
        bundle = load_bundle(bundle_dir)
        loaded = responses if isinstance(responses, Responses) else read_export(responses)
    if loaded.trial_design is not None:
        analyze_design, write = {
            VERIFICATION: (analyze_verification, write_verification_report),
            COUNTERFACTUAL_SIMULATION: (analyze_pairs, write_pairs_report),
        }.get(loaded.trial_design, (analyze_trials, write_simulation_report))
        with watch("trials"):
            result = analyze_design(loaded, exclusions, level, n_boot, seed)
        with watch("questionnaires"):
            result.questionnaires = analyze_questionnaires(
                loaded.questionnaire, result.trials["participant_id"], level, n_boot, seed
            )
        with watch("report"):
            write(result, bundle, loaded.source, out_dir)
        result.timings = watch.seconds
        return result

    power = None
    if power_sims:
        from analysis.power import default_ns, power_curve

        pre = score_study(loaded, bundle, rule, exclusions)
        observed = pre.answers.groupby("condition")["correct"].mean()
        accuracy = {c: float(observed[c]) for c in pre.conditions}
        if len(accuracy) >= 2:
            n_now = int(pre.participants.groupby("condition").size().mean())
            with watch("power"):
                power = power_curve(
                    accuracy,
                    default_ns(n_now),
                    sims=power_sims,
                    seed=seed,
                    n_attributes=len(pre.attributes),
                )

    analysis = run_analysis(
        loaded, bundle, rule, exclusions, n_boot, seed, model, level, power, watch
    )
    with watch("questionnaires"):
        analysis.questionnaires = analyze_questionnaires(
            loaded.questionnaire,
            analysis.scored.participants["participant_id"],
            level,
            n_boot,
            seed,
        )
    with watch("report"):  # analysis.timings is watch.seconds: this adds to it
        write_report(analysis, bundle, loaded.source, out_dir)
    return analysis
