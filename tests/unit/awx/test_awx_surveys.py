"""Every survey in the AWX data is one AWX would accept, asks what the playbooks read, and refuses wrong answers.

The JSON schema (survey_spec.schema.json) is written from AWX's documented survey_spec format; the
checks across fields that a schema cannot express (AWX's JobTemplateSurveySpec view makes them too)
are below it. The answers a launch gives are checked as AWX checks them (awx_model.survey_answer_errors, from
SurveyJobTemplateMixin._survey_element_validation): a wrong answer is refused at launch, before any job starts.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from awx_model import REPO, survey_answer_errors, survey_defaults

SCHEMA = json.loads((Path(__file__).parent / "survey_spec.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def survey_errors(survey: dict[str, Any]) -> list[str]:
    """What AWX would refuse in this survey, schema and cross-field checks together."""
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in VALIDATOR.iter_errors(survey)]
    if errors:
        return errors
    seen: set[str] = set()
    for index, question in enumerate(survey["spec"]):
        where = f"spec/{index} ({question['variable']})"
        if question["variable"] in seen:
            errors.append(f"{where}: variable duplicated")
        seen.add(question["variable"])
        default = question.get("default", "")
        if question["type"] in ("multiplechoice", "multiselect"):
            choices = question["choices"]
            choices = choices.splitlines() if isinstance(choices, str) else choices
            defaults = [d for d in default.splitlines() if d.strip()]
            if question["type"] == "multiplechoice" and len(defaults) > 1:
                errors.append(f"{where}: a multiple choice question has one default")
            if any(d not in choices for d in defaults):
                errors.append(f"{where}: default {default!r} is not among the choices {choices}")
        low, high = question.get("min"), question.get("max")
        if low is not None and high is not None and low > high:
            errors.append(f"{where}: min {low} > max {high}")
        if default != "" and question["type"] in ("text", "textarea", "password", "integer", "float"):
            measure = len(default) if isinstance(default, str) else default
            if (low is not None and measure < low) or (high is not None and measure > high):
                errors.append(f"{where}: default {default!r} outside [{low}, {high}]")
    return errors


def surveys(awx_data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [(t["name"], t["survey_spec"]) for t in awx_data["controller_templates"] if "survey_spec" in t]
    found += [(w["name"], w["survey_spec"]) for w in awx_data["controller_workflows"] if "survey_spec" in w]
    return found


def test_every_template_with_a_survey_enables_it(awx_data):
    for template in awx_data["controller_templates"] + awx_data["controller_workflows"]:
        assert bool(template.get("survey_enabled")) == ("survey_spec" in template), template["name"]


def test_surveys_are_valid_awx_survey_specs(awx_data):
    found = surveys(awx_data)
    assert {name for name, _ in found} >= {"Tokens migration rehearsal", "Tokens migration", "Tokens rollback",
                                           "Tokens migration with rollback"}
    for name, survey in found:
        assert survey_errors(survey) == [], name


def _questions(awx_data, name: str) -> dict[str, dict[str, Any]]:
    return {q["variable"]: q for n, s in surveys(awx_data) if n == name for q in s["spec"]}


def test_surveys_ask_what_the_issue_asks_for(awx_data):
    migrate = _questions(awx_data, "Tokens migration")
    rollback = _questions(awx_data, "Tokens rollback")
    # Notes for the sign-off, automatic rollback on/off, restore on rollback, target revision.
    assert {"ledgermind_notes", "ledgermind_auto_rollback", "migration_rollback_restore_from_backup",
            "ledgermind_target_revision"} <= set(migrate)
    assert {"ledgermind_notes", "migration_rollback_restore_from_backup",
            "migration_rollback_revision"} <= set(rollback)
    # The target revisions are exact, never head or -1.
    assert migrate["ledgermind_target_revision"]["choices"] == ["502d44cd70ab"]
    assert rollback["migration_rollback_revision"]["choices"] == ["20251109_add_user_name_picture"]


def test_boolean_answers_are_ones_the_playbooks_read_with_bool(awx_data):
    # The playbooks read these with `| bool`; AWX passes a multiple choice answer as a string.
    for _name, survey in surveys(awx_data):
        for question in survey["spec"]:
            if question["variable"] in ("ledgermind_auto_rollback", "migration_rollback_restore_from_backup",
                                        "ledgermind_rehearsal"):
                assert question["type"] == "multiplechoice"
                assert sorted(question["choices"]) == ["false", "true"]
                assert question["default"] in ("true", "false")


def test_survey_variables_are_read_by_the_collection(awx_data):
    """A survey variable nothing reads would be a question whose answer is silently ignored."""
    sources = "\n".join(p.read_text() for pattern in ("roles/*/defaults/main.yml", "roles/*/tasks/*.yml",
                                                      "playbooks/*.yml", "playbooks/tasks/*.yml")
                        for p in REPO.glob(pattern))
    for _name, survey in surveys(awx_data):
        for question in survey["spec"]:
            assert question["variable"] in sources, question["variable"]


GOOD = {"name": "s", "description": "", "spec": [
    {"type": "text", "question_name": "q", "variable": "v", "required": False, "default": "x", "min": 0, "max": 5},
]}


def _bad(path: tuple, value: Any) -> dict[str, Any]:
    survey = copy.deepcopy(GOOD)
    target = survey
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return survey


@pytest.mark.parametrize(("survey", "needle"), [
    (_bad(("description",), KeyError), "'description' is a required property"),
    (_bad(("spec",), []), "should be non-empty"),
    (_bad(("spec", 0, "required"), "yes"), "is not of type 'boolean'"),
    (_bad(("spec", 0, "type"), "checkbox"), "is not one of"),
    (_bad(("spec", 0, "variable"), "not a var"), "does not match"),
    (_bad(("spec", 0, "min"), "1"), "is not of type 'integer', 'null'"),
    (_bad(("spec", 0, "default"), "$encrypted$"), "should not be valid"),
    (_bad(("spec", 0, "questoin_name"), "typo"), "Additional properties are not allowed"),
    (_bad(("spec", 0, "default"), "too long"), "outside [0, 5]"),
    (_bad(("spec", 0), {"type": "multiplechoice", "question_name": "q", "variable": "v", "required": True}),
     "'choices' is a required property"),
    (_bad(("spec", 0), {"type": "multiplechoice", "question_name": "q", "variable": "v", "required": True,
                        "choices": ["a", "b"], "default": "c"}), "not among the choices"),
    (_bad(("spec", 0), {"type": "integer", "question_name": "q", "variable": "v", "required": True,
                        "default": "3"}), "is not valid under any of the given schemas"),
    ({**GOOD, "spec": GOOD["spec"] * 2}, "variable duplicated"),
])
def test_the_checks_refuse_what_awx_refuses(survey, needle):
    errors = survey_errors(survey)
    assert any(needle in e for e in errors), errors


def test_the_checks_accept_awx_documented_example():
    documented = {"name": "Simple", "description": "Description", "spec": [
        {"type": "text", "question_name": "cantbeshort", "question_description": "What is a long answer",
         "variable": "long_answer", "min": 5, "max": None, "required": False, "default": "Leeloo Minai"},
        {"type": "integer", "question_name": "integerchoice", "question_description": "I need an int here",
         "variable": "int_answer", "min": 1, "max": 5, "required": False, "default": ""},
        {"type": "float", "question_name": "float", "question_description": "I need a float here",
         "variable": "float_answer", "min": 2, "max": 5, "required": False, "default": ""},
        {"type": "multiselect", "question_name": "multiselect", "variable": "multi_answer",
         "choices": "one\ntwo\nthree", "required": False, "default": "one\ntwo"},
        {"type": "password", "question_name": "secret", "variable": "secret", "required": False,
         "default": "$encrypted$"},
    ]}
    assert survey_errors(documented) == []


def test_no_survey_answer_overrides_what_the_rollback_passes_to_its_roles(awx_data):
    """Survey answers are extra vars, which beat include_role vars: a survey asking for db_migration_revision
    would also move the automatic rollback's downgrade to that revision (found by the AWX job tests)."""
    rollback_tasks = (REPO / "roles" / "migration_rollback" / "tasks" / "main.yml").read_text()
    for _name, survey in surveys(awx_data):
        for question in survey["spec"]:
            assert f"{question['variable']}:" not in rollback_tasks, question["variable"]


# ------------------------------------------------------------------------------------- issue 13's choices

# What each new choice must be asked as: type, choices or range. Ranges are the issue's; the defaults are the
# playbooks' own (test_survey_defaults_are_the_playbooks_defaults).
NEW_CHOICES: dict[str, dict[str, Any]] = {
    "ledgermind_conversion": {"type": "multiplechoice", "choices": ["auto", "in_place", "online"], "required": True},
    "ledgermind_online_batch_size": {"type": "integer", "min": 100, "max": 100000, "required": True},
    "ledgermind_online_batch_pause": {"type": "float", "min": 0, "max": 10, "required": True},
    "ledgermind_rehearsal": {"type": "multiplechoice", "choices": ["true", "false"], "required": True},
    "ledgermind_latency_max_ratio": {"type": "float", "min": 1, "max": 10, "required": True},
    "ledgermind_latency_slack_ms": {"type": "float", "min": 0, "max": 1000, "required": True},
    # Required only when AWX has no user for the run: no survey can say so, so the playbook refuses a run with
    # neither (ledgermind_require_operator, set in the AWX inventory), at its start.
    "ledgermind_operator": {"type": "text", "min": 0, "max": 128, "required": False},
}
# Where each is asked: the workflow, and each job template where it runs alone and the choice means something.
ASKED_IN = {
    "Tokens migration with rollback": set(NEW_CHOICES),
    "Tokens migration": set(NEW_CHOICES),
    "Tokens migration rehearsal": set(NEW_CHOICES) - {"ledgermind_latency_max_ratio", "ledgermind_latency_slack_ms"},
    "Tokens rollback": {"ledgermind_conversion", "ledgermind_online_batch_size", "ledgermind_online_batch_pause",
                        "ledgermind_operator"},
}


@pytest.mark.parametrize("name", sorted(ASKED_IN))
def test_the_new_choices_are_asked_where_they_run(awx_data, name):
    asked = set(_questions(awx_data, name))
    assert ASKED_IN[name] <= asked
    assert not (set(NEW_CHOICES) - ASKED_IN[name]) & asked, "a question whose answer this job ignores"


def test_each_new_choice_is_validated_by_the_survey(awx_data):
    """Choices and ranges in the survey itself, so that AWX refuses a wrong answer, not the playbook halfway."""
    for name, variables in ASKED_IN.items():
        questions = _questions(awx_data, name)
        for variable in variables:
            question = questions[variable]
            for key, expected in NEW_CHOICES[variable].items():
                assert question.get(key) == expected, (name, variable, key)


def test_the_same_question_is_asked_the_same_way_everywhere(awx_data):
    """The workflow repeats the job templates' questions (its answers reach every node): same type, choices,
    range and default wherever a variable is asked."""
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, survey in surveys(awx_data):
        for question in survey["spec"]:
            shape = {k: question.get(k) for k in ("type", "choices", "min", "max", "default", "required")}
            first = seen.setdefault(question["variable"], (name, shape))
            assert shape == first[1], f"{question['variable']}: {name} asks {shape}, {first[0]} {first[1]}"


def test_survey_defaults_are_the_playbooks_defaults(awx_data):
    """Launching with the defaults runs exactly what the CLI runs without -e."""
    sources = "\n".join(p.read_text() for p in REPO.glob("roles/*/defaults/main.yml"))
    for variable in set(NEW_CHOICES) - {"ledgermind_operator"}:
        literals = set(re.findall(rf"\b{variable} \| default\(([^,()]+)\)", sources))
        assert literals, f"no role reads {variable} with a default"
        for _name, survey in surveys(awx_data):
            for question in survey["spec"]:
                if question["variable"] == variable:
                    default = question["default"]
                    for literal in literals:
                        value = literal.strip("'\"")
                        assert (str(default).lower() == value.lower() if question["type"] == "multiplechoice"
                                else float(default) == float(value)), (variable, default, literal)


def test_the_defaults_are_accepted(awx_data):
    for name, survey in surveys(awx_data):
        assert survey_answer_errors(survey, survey_defaults(survey)) == [], name


GOOD_ANSWERS = {
    "ledgermind_conversion": ["auto", "in_place", "online"],
    "ledgermind_online_batch_size": [100, 5000, 100000],
    "ledgermind_online_batch_pause": [0, 0.25, 10],
    "ledgermind_rehearsal": ["true", "false"],
    "ledgermind_latency_max_ratio": [1, 1.5, 10],
    "ledgermind_latency_slack_ms": [0, 10, 1000],
    "ledgermind_operator": ["", "Jane Doe (SRE on call)"],
}
BAD_ANSWERS = {
    "ledgermind_conversion": [("fast", "expected to be one of"), ("in-place", "expected to be one of"),
                              ("", "expected to be one of")],
    "ledgermind_online_batch_size": [(99, "too small"), (100001, "too large"), (0, "too small"),
                                     ("5000", "expected to be an integer"), (5000.5, "expected to be an integer")],
    "ledgermind_online_batch_pause": [(-0.1, "too small"), (10.5, "too large"), ("1", "expected to be a numeric")],
    "ledgermind_rehearsal": [("yes", "expected to be one of"), (True, "expected to be one of")],
    "ledgermind_latency_max_ratio": [(0.5, "too small"), (11, "too large"), ("2", "expected to be a numeric")],
    "ledgermind_latency_slack_ms": [(-1, "too small"), (1000.1, "too large")],
    "ledgermind_operator": [("x" * 129, "too large"), (42, "expected to be a string")],
}


@pytest.mark.parametrize("name", sorted(ASKED_IN))
def test_awx_accepts_every_valid_answer(awx_data, name):
    survey = dict(surveys(awx_data))[name]
    for variable in ASKED_IN[name]:
        for value in GOOD_ANSWERS[variable]:
            answers = {**survey_defaults(survey), variable: value}
            assert survey_answer_errors(survey, answers) == [], (variable, value)


@pytest.mark.parametrize("name", sorted(ASKED_IN))
def test_awx_refuses_each_wrong_answer_at_launch(awx_data, name):
    survey = dict(surveys(awx_data))[name]
    for variable in ASKED_IN[name]:
        for value, needle in BAD_ANSWERS[variable]:
            errors = survey_answer_errors(survey, {**survey_defaults(survey), variable: value})
            assert len(errors) == 1 and needle in errors[0] and variable in errors[0], (variable, value, errors)


def test_a_required_choice_left_out_is_refused(awx_data):
    survey = dict(surveys(awx_data))["Tokens migration with rollback"]
    answers = survey_defaults(survey)
    del answers["ledgermind_conversion"]
    assert survey_answer_errors(survey, answers) == ["'ledgermind_conversion' value missing"]


def test_the_awx_inventory_requires_an_operator(awx_data):
    """The operator question is optional (AWX's user signs); a run with neither is refused by the playbook's start."""
    [inventory] = awx_data["controller_inventories"]
    assert inventory["variables"]["ledgermind_require_operator"] is True
    start = (REPO / "playbooks" / "tasks" / "start_run.yml").read_text()
    assert "ledgermind_require_operator" in start and "ledgermind_operator" in start and "awx_user_name" in start
