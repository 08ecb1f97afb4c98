"""Flask-WTF forms of the participant flow and the admin (CSRF on every one).

The participant's labels and messages are marked for translation (languages.py); the
admin's stay English."""

from __future__ import annotations

import functools
import re

from babel import support
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.i18n import messages_path
from wtforms.validators import (
    AnyOf,
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)
from wtforms.widgets import HiddenInput

from study_server.study import LIKERT, Question, Questionnaire, QuestionnaireItem, Study

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

GENDERS = [
    SelectChoice("", _l("Prefer not to say")),
    SelectChoice("female", _l("Female")),
    SelectChoice("male", _l("Male")),
    SelectChoice("diverse", _l("Diverse / non-binary")),
]
ML_EXPERIENCE = [
    SelectChoice("", _l("Prefer not to say")),
    SelectChoice("none", _l("None")),
    SelectChoice("some", _l("I know the basic ideas")),
    SelectChoice("practical", _l("I have built or trained a model")),
    SelectChoice("expert", _l("I work or research in machine learning")),
]


def without_control_characters(text: str) -> str:
    """``text`` with the characters no database column may hold removed."""
    return _CONTROL.sub("", text)


def no_control_characters(form, field) -> None:
    if field.data and _CONTROL.search(field.data):
        raise ValidationError(_l("The text contains characters that cannot be stored."))


@functools.cache
def _wtforms_catalog(locale: str) -> support.Translations:
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


class _WTFormsMessages:
    """WTForms' own messages (e.g. "This field is required.") in the participant's
    language, each catalog read from disk once per process, not once per request as
    Flask-WTF's default does."""

    def gettext(self, string: str) -> str:
        return _wtforms_catalog(str(get_locale())).ugettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return _wtforms_catalog(str(get_locale())).ungettext(singular, plural, n)


class StepForm(FlaskForm):
    """Every participant form carries the revision of the page it was shown at."""

    class Meta:
        def get_translations(self, form):
            return _WTFormsMessages()

    rev = HiddenField(validators=[InputRequired()])

    def revision(self) -> int | None:
        try:
            return int(self.rev.data)
        except (TypeError, ValueError):
            return None


class ContinueForm(StepForm):
    """A page whose only input is the "Next" button (intro, tutorial, explanations)."""


class ConsentForm(StepForm):
    consent = RadioField(
        _l("Do you agree to take part?"),
        choices=[
            SelectChoice("yes", _l("I agree to take part")),
            SelectChoice("no", _l("I do not want to take part")),
        ],
        validators=[InputRequired(_l("Please choose one."))],
    )


@functools.cache
def rating_form(study: Study) -> type[StepForm]:
    class RatingForm(StepForm):
        rating = RadioField(
            _l("Rating"),
            choices=[SelectChoice(i + 1, label) for i, label in enumerate(study.scale_labels)],
            coerce=int,
            validators=[InputRequired(_l("Please choose a rating."))],
        )
        reason = TextAreaField(
            _l("Why? (one or two sentences)"),
            validators=[
                DataRequired(_l("Please give a short reason.")),
                Length(
                    max=study.reason_max_chars,
                    message=_l(
                        "Please keep the reason under %(count)d characters.",
                        count=study.reason_max_chars,
                    ),
                ),
                no_control_characters,
            ],
        )

    return RatingForm


@functools.cache
def choice_form(questions: tuple[Question, ...]) -> type[StepForm]:
    """One radio field ``q_<id>`` per question (comprehension and attention checks)."""
    fields = {
        f"q_{q.id}": RadioField(
            q.question,
            choices=[SelectChoice(value, label) for value, label in q.shown_options],
            validators=[InputRequired(_l("Please answer this question."))],
        )
        for q in questions
    }
    return type("ChoiceForm", (StepForm,), fields)


def _likert_field(item: QuestionnaireItem) -> RadioField:
    """Points 1..n, the first and the last labelled with their anchors; an optional item
    may be left empty (no choice to validate then)."""
    labels = {1: f"1 ({item.low})", item.points: f"{item.points} ({item.high})"}
    return RadioField(
        item.text,
        choices=[SelectChoice(i, labels.get(i, str(i))) for i in range(1, item.points + 1)],
        coerce=lambda value: None if value in (None, "") else int(value),
        validate_choice=item.required,
        validators=[InputRequired(_l("Please choose a point of the scale."))]
        if item.required
        else [Optional(), AnyOf(range(1, item.points + 1))],
    )


def _text_field(item: QuestionnaireItem) -> TextAreaField:
    return TextAreaField(
        item.text,
        validators=[
            DataRequired(_l("Please answer this question.")) if item.required else Optional(),
            Length(
                max=item.max_length,
                message=_l(
                    "Please keep the answer under %(count)d characters.", count=item.max_length
                ),
            ),
            no_control_characters,
        ],
    )


@functools.cache
def questionnaire_form(questionnaire: Questionnaire) -> type[StepForm]:
    """One field ``i_<item id>`` per item: radio buttons of a Likert item, a text area of
    a free-text one."""
    fields = {
        f"i_{item.id}": (_likert_field if item.kind == LIKERT else _text_field)(item)
        for item in questionnaire.items
    }
    return type("QuestionnaireForm", (StepForm,), fields)


# The two answers of a forward-simulation trial, with the key that gives each
# (static/trials.js): the left hand for Peaky, the right for Stretchy.
PREDICTIONS = [SelectChoice("peaky", _l("Peaky")), SelectChoice("stretchy", _l("Stretchy"))]
PREDICTION_KEYS = {"peaky": "F", "stretchy": "J"}
# The two verdicts of a verification trial on the model's decision, keyed the same way.
VERDICTS = [SelectChoice("right", _l("Right")), SelectChoice("wrong", _l("Wrong"))]
VERDICT_KEYS = {"right": "F", "wrong": "J"}
# A distinction trial's two maps, left (A) and right (B), keyed the same way.
PANELS = [SelectChoice("A", _l("Explanation A")), SelectChoice("B", _l("Explanation B"))]
PANEL_KEYS = {"A": "F", "B": "J"}
CONFIDENCE = [
    SelectChoice(1, _l("Guessing")),
    SelectChoice(2, _l("Unsure")),
    SelectChoice(3, _l("Fairly sure")),
    SelectChoice(4, _l("Sure")),
    SelectChoice(5, _l("Certain")),
]
LONGEST_TRIAL_MS = 3_600_000  # a longer browser time is not a trial's


@functools.cache
def prediction_form(confidence: bool, verdict: bool = False) -> type[StepForm]:
    """A trial's answer (the field ``prediction``, the Trial column it is stored in): the
    model's decision as the participant predicts it, or (``verdict``) whether the model's
    decision is right; the time the browser measured from showing the scene to the
    answer, and (``confidence``) how sure."""
    if verdict:
        question, choices = _l("Is the model's decision right?"), VERDICTS
        missing = _l("Please choose Right or Wrong.")
    else:
        question, choices = _l("What did the model decide?"), PREDICTIONS
        missing = _l("Please choose Peaky or Stretchy.")
    fields = {
        "prediction": RadioField(question, choices=choices, validators=[InputRequired(missing)]),
        **_timing_and_confidence(confidence),
    }
    return type("PredictionForm", (StepForm,), fields)


@functools.cache
def panel_form(confidence: bool) -> type[StepForm]:
    """A distinction trial's answer: which map explains the model's decision (stored as
    the animal that map explains), the browser's time to the answer and (``confidence``)
    how sure."""
    fields = {
        "panel": RadioField(
            _l("Which explanation belongs to the model's decision?"),
            choices=PANELS,
            validators=[InputRequired(_l("Please choose explanation A or B."))],
        ),
        **_timing_and_confidence(confidence),
    }
    return type("PanelForm", (StepForm,), fields)


def _timing_and_confidence(confidence: bool) -> dict:
    """The fields every trial's form has beside its answer."""
    fields = {
        "response_ms": IntegerField(
            widget=HiddenInput(), validators=[Optional(), NumberRange(0, LONGEST_TRIAL_MS)]
        )
    }
    if confidence:
        fields["confidence"] = RadioField(
            _l("How sure are you?"),
            choices=CONFIDENCE,
            coerce=int,
            validators=[InputRequired(_l("Please say how sure you are."))],
        )
    return fields


class DemographicsForm(StepForm):
    age = IntegerField(
        _l("Age (optional)"),
        validators=[Optional(), NumberRange(16, 120, _l("Please give an age between 16 and 120."))],
    )
    gender = SelectField(_l("Gender (optional)"), choices=GENDERS, validators=[Optional()])
    ml_experience = SelectField(
        _l("Experience with machine learning (optional)"),
        choices=ML_EXPERIENCE,
        validators=[Optional()],
    )


class LoginForm(FlaskForm):
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


class ActionForm(FlaskForm):
    """A bare CSRF-protected button (exclude, preview, logout)."""


class AuditedForm(FlaskForm):
    """A researcher's change to a running study: who makes it (the admin password is
    shared, so the audit trail records the name given) and why."""

    actor = StringField(
        "Your name or initials",
        validators=[
            DataRequired("Give your name or initials for the audit trail."),
            Length(max=100),
            no_control_characters,
        ],
    )
    reason = StringField("Reason (optional)", validators=[Length(max=2000), no_control_characters])


class StateForm(AuditedForm):
    """Open, pause or close the study or one condition (choices set by the view)."""

    target = SelectField("Study or condition", validators=[InputRequired()])
    state = SelectField("New state", validators=[InputRequired()])


class ExclusionForm(AuditedForm):
    """Exclude participants (or include them again), always with a reason."""

    reason = StringField(
        "Reason",
        validators=[
            DataRequired("Give the reason for the exclusion."),
            Length(max=2000),
            no_control_characters,
        ],
    )
    excluded = HiddenField(default="1")


class PreviewForm(FlaskForm):
    """Open any page of any condition as a preview participant (choices set by the view)."""

    condition = SelectField("Condition", validators=[InputRequired()])
    page = SelectField("Page", validators=[InputRequired()])
