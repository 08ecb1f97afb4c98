"""Flask-WTF forms of the participant flow and the admin (CSRF on every one)."""

from __future__ import annotations

import functools
import re

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
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from study_server.study import Question, Study

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

GENDERS = [
    SelectChoice("", "Prefer not to say"),
    SelectChoice("female", "Female"),
    SelectChoice("male", "Male"),
    SelectChoice("diverse", "Diverse / non-binary"),
]
ML_EXPERIENCE = [
    SelectChoice("", "Prefer not to say"),
    SelectChoice("none", "None"),
    SelectChoice("some", "I know the basic ideas"),
    SelectChoice("practical", "I have built or trained a model"),
    SelectChoice("expert", "I work or research in machine learning"),
]


def without_control_characters(text: str) -> str:
    """``text`` with the characters no database column may hold removed."""
    return _CONTROL.sub("", text)


def no_control_characters(form, field) -> None:
    if field.data and _CONTROL.search(field.data):
        raise ValidationError("The text contains characters that cannot be stored.")


class StepForm(FlaskForm):
    """Every participant form carries the revision of the page it was shown at."""

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
        "Do you agree to take part?",
        choices=[
            SelectChoice("yes", "I agree to take part"),
            SelectChoice("no", "I do not want to take part"),
        ],
        validators=[InputRequired("Please choose one.")],
    )


@functools.cache
def rating_form(study: Study) -> type[StepForm]:
    class RatingForm(StepForm):
        rating = RadioField(
            "Rating",
            choices=[SelectChoice(i + 1, label) for i, label in enumerate(study.scale_labels)],
            coerce=int,
            validators=[InputRequired("Please choose a rating.")],
        )
        reason = TextAreaField(
            "Why? (one or two sentences)",
            validators=[
                DataRequired("Please give a short reason."),
                Length(
                    max=study.reason_max_chars,
                    message=f"Please keep the reason under {study.reason_max_chars} characters.",
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
            choices=[SelectChoice(option, option) for option in q.options],
            validators=[InputRequired("Please answer this question.")],
        )
        for q in questions
    }
    return type("ChoiceForm", (StepForm,), fields)


class DemographicsForm(StepForm):
    age = IntegerField(
        "Age (optional)",
        validators=[Optional(), NumberRange(16, 120, "Please give an age between 16 and 120.")],
    )
    gender = SelectField("Gender (optional)", choices=GENDERS, validators=[Optional()])
    ml_experience = SelectField(
        "Experience with machine learning (optional)",
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
