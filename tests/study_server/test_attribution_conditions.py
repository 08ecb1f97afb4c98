"""A study of attribution-map conditions: the study file names them, the server shows
each scene with its map under it, asks what a map shows, and stores the answers like
any other condition's."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from html import unescape

import pytest
from server_helpers import answer_all, attribution_study, current_page, make_app, walk_to

from explain.bundle_format import load_manifest
from simulation.client import ParticipantClient
from simulation.transport import FlaskTransport
from study_server import study_context
from study_server.study import load_study
from xaistudy.errors import UserError
from xaistudy.vocabulary import CONDITIONS, Status

METHODS = ("integrated_gradients", "grad_cam")  # the fixture bundle's: signed, unsigned


@pytest.fixture
def attribution_app(bundle_dir, tmp_path):
    return make_app(
        bundle_dir,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        XAISTUDY_STUDY=str(attribution_study(tmp_path)),
    )


def test_participants_complete_a_study_of_attribution_conditions(attribution_app):
    results = [
        ParticipantClient(FlaskTransport(attribution_app), prolific_pid=f"PMAP{i}").run(answer_all)
        for i in range(4)
    ]
    assert {r.status for r in results} == {Status.COMPLETED}
    assert Counter(r.condition for r in results) == {name: 2 for name in METHODS}


def test_each_scene_is_shown_with_its_map_under_it(attribution_app):
    client = attribution_app.test_client()
    html = walk_to(client, "explanations")
    condition = study_context(attribution_app).manifest.conditions[
        re.search(r'name="xaistudy-condition" content="([^"]+)"', html).group(1)
    ]
    cells = re.findall(r"<td>(.*?)</td>", html, flags=re.S)
    assert len(cells) == condition.layout.rows * condition.layout.columns
    for cell in cells:
        alts = [unescape(a) for a in re.findall(r'alt="([^"]*)"', cell)]
        assert len(alts) == 2 and alts[1] == f"Map of the picture above ({alts[0]})"
    assert unescape(html).count(condition.description.split(":")[0]) == 1


def test_the_comprehension_question_asks_what_a_map_shows(attribution_app):
    client = attribution_app.test_client()
    html = unescape(walk_to(client, "comprehension"))
    assert "What do the" in html and "parts of a map show?" in html
    assert html.count("<img") >= 2 * 5  # the example row: five scenes with their maps
    study = study_context(attribution_app).study
    questions = [q for q in study.comprehension if q.id == "read-example"]
    # one for the signed maps' red parts, one for the unsigned maps' bright parts
    assert sorted(q.conditions for q in questions) == [("grad_cam",), ("integrated_gradients",)]
    assert {q.correct for q in questions} == {"the parts that made the model decide the way it did"}


def test_a_german_participant_reads_the_maps_in_german(bundle_dir, tmp_path):
    app = make_app(
        bundle_dir,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        XAISTUDY_STUDY=str(attribution_study(tmp_path, language="de")),
    )
    html = unescape(walk_to(app.test_client(), "explanations", pid="PDEMAP"))
    assert current_page(html) == "explanations"
    assert "Wohin das Modell schaut" in html and "Karte des Bildes darüber" in html
    assert "Map of the picture above" not in html


def test_a_study_naming_a_method_the_bundle_lacks_is_refused(bundle_dir, tmp_path):
    manifest = load_manifest(bundle_dir)
    without_lrp = dataclasses.replace(
        manifest, conditions=dataclasses.replace(manifest.conditions, lrp=None)
    )
    study = load_study(attribution_study(tmp_path, conditions=("integrated_gradients", "lrp")))
    with pytest.raises(UserError, match=r"study condition\(s\) lrp are not in the bundle"):
        study.with_bundle(without_lrp)


def test_an_unknown_condition_names_the_allowed_ones(bundle_dir, tmp_path):
    study = attribution_study(tmp_path, conditions=("integrated_gradients", "saliency"))
    with pytest.raises(UserError, match="unknown condition 'saliency'; allowed are baseline,.*iba"):
        make_app(bundle_dir, f"sqlite:///{tmp_path / 'db.sqlite'}", XAISTUDY_STUDY=str(study))


def test_a_study_file_made_for_a_set_of_conditions_serves_them(bundle_dir, tmp_path):
    """What ``xaistudy demo --conditions`` writes: the default study for those conditions,
    with the questions of the others left out; participants complete it."""
    from xaistudy.cli.demo_pipeline import DemoSettings, server_config, study_stage

    settings = DemoSettings(out=tmp_path, conditions=("baseline", "grad_cam"))
    path = study_stage(settings)
    assert path == tmp_path / "study.toml"
    assert "serving baseline, grad_cam" in path.read_text().splitlines()[0]
    assert server_config(settings).settings()["XAISTUDY_STUDY"] == str(path)
    assert settings.simulated_accuracy == {"baseline": 0.7, "grad_cam": 0.65}
    app = make_app(bundle_dir, f"sqlite:///{tmp_path / 'db.sqlite'}", XAISTUDY_STUDY=str(path))
    study = study_context(app).study
    assert study.condition_names == ("baseline", "grad_cam")
    assert {q.conditions for q in study.comprehension} == {("baseline",), ("grad_cam",)}
    results = [
        ParticipantClient(FlaskTransport(app), prolific_pid=f"PSET{i}").run(answer_all)
        for i in range(2)
    ]
    assert sorted(r.condition for r in results) == ["baseline", "grad_cam"]
    # the ICLR 2022 study's three are the shipped default study: no file of their own
    assert study_stage(DemoSettings(out=tmp_path / "default", conditions=CONDITIONS)) is None


def test_the_demo_chooses_a_model_for_its_conditions_and_conditions_for_its_model():
    from xaistudy.cli.demo_pipeline import DEMO_CONDITIONS, demo_choice

    assert demo_choice(None, None) == ("resnet-cpu", DEMO_CONDITIONS)
    assert demo_choice(None, CONDITIONS) == ("cpu-small", CONDITIONS)
    assert demo_choice(None, ("baseline", "grad_cam")) == ("resnet-cpu", ("baseline", "grad_cam"))
    assert demo_choice("cpu-study", None) == ("cpu-study", CONDITIONS)
    assert demo_choice("resnet-cpu", None) == ("resnet-cpu", DEMO_CONDITIONS)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--conditions", "baseline,saliency"], "unknown condition(s) saliency; allowed are"),
        (
            ["--config", "cpu-small", "--conditions", "baseline,lrp"],
            "lrp is not defined for the invertible model",
        ),
        # counterfactuals make the demo train the invertible network, which has no LRP
        (["--conditions", "counterfactuals,lrp"], "lrp is not defined for the invertible model"),
        (
            ["--config", "resnet-cpu", "--conditions", "baseline,counterfactuals"],
            "counterfactuals need the invertible network",
        ),
    ],
)
def test_the_demo_refuses_what_it_cannot_build_before_any_work(tmp_path, extra, message):
    from click.testing import CliRunner

    from xaistudy.cli import cli

    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--no-serve", *extra])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()
