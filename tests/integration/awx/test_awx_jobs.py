"""The job templates, run through ansible-runner the way AWX runs them (see conftest.py): a job launched on its own,
by a schedule.

The jobs a workflow hands on to each other are checked on the workflow's own nodes, with the assertions this file
made when it launched them one by one and so repeated the workflow's runs (test_awx_workflow_runs.py): a migration job
signs off as the AWX user and hands its backup to the next workflow node with set_stats; the rollback node, given
those artifacts as extra vars (as AWX passes them), rolls back against that exact archive; a failing migration is a
failed job, after which the rollback succeeds and the workflow's last node fails on purpose.
"""
from __future__ import annotations


def test_a_scheduled_rehearsal_signs_as_the_operator_and_refuses_without_one(awx_jobs, scratch_db):
    """A schedule has no AWX user: the survey's operator signs; without one the run is refused at its start."""
    original = scratch_db.state()
    signed = awx_jobs.launch("Tokens migration rehearsal", {"ledgermind_operator": "Jane Doe (SRE on call)"},
                             launched_by=None, launch_type="scheduled")
    assert signed.status == "successful", signed.describe()
    assert signed.report["deployed_by"] == "Jane Doe (SRE on call)"

    nameless = awx_jobs.launch("Tokens migration rehearsal", launched_by=None, launch_type="scheduled")
    assert nameless.status == "failed" and "Deployed by is required" in nameless.stdout, nameless.describe()
    assert nameless.report is None and scratch_db.state() == original
