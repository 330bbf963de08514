"""Every survey in the AWX data is one AWX would accept, and asks what the playbooks read.

The JSON schema (survey_spec.schema.json) is written from AWX's documented survey_spec format; the
checks across fields that a schema cannot express (AWX's JobTemplateSurveySpec view makes them too)
are below it.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

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
    assert {name for name, _ in found} >= {"Tokens migration", "Tokens rollback", "Tokens migration with rollback"}
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
            if question["variable"] in ("ledgermind_auto_rollback", "migration_rollback_restore_from_backup"):
                assert question["type"] == "multiplechoice"
                assert sorted(question["choices"]) == ["false", "true"]
                assert question["default"] in ("true", "false")


def test_survey_variables_are_read_by_the_collection(awx_data):
    """A survey variable nothing reads would be a question whose answer is silently ignored."""
    repo = Path(__file__).resolve().parents[3]
    sources = "\n".join(p.read_text() for pattern in ("roles/*/defaults/main.yml", "roles/*/tasks/*.yml",
                                                      "playbooks/*.yml", "playbooks/tasks/*.yml")
                        for p in repo.glob(pattern))
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
    repo = Path(__file__).resolve().parents[3]
    rollback_tasks = (repo / "roles" / "migration_rollback" / "tasks" / "main.yml").read_text()
    for _name, survey in surveys(awx_data):
        for question in survey["spec"]:
            assert f"{question['variable']}:" not in rollback_tasks, question["variable"]
