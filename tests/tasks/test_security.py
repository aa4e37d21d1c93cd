"""Tasks are known by registration: no path read from a row is ever imported, by the worker
or by ``get_result()``."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("django.tasks")

from django.tasks import TaskResultStatus, default_task_backend  # noqa: E402
from django.tasks.exceptions import TaskResultDoesNotExist  # noqa: E402

from django_jobs import registry  # noqa: E402
from django_jobs.models import Job  # noqa: E402

CRAFTED = "tests.tasksapp.crafted"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def crafted_row(name: str) -> Job:
    """A row as an attacker with write access to the table would write it."""
    return Job.objects.create(
        name=name,
        data={"args": [], "kwargs": {}},
        meta={"django_task": {"backend": "default", "run_after": False}},
    )


def test_a_row_naming_an_unregistered_task_fails_and_its_module_is_never_imported(
    start_worker, tmp_path
):
    marker = tmp_path / "imported"
    env = {"TASKS_CRAFTED_MARKER": str(marker)}
    assert f"{CRAFTED}.payload" not in registry
    rows = [crafted_row(f"{CRAFTED}.payload"), crafted_row(CRAFTED), crafted_row("os.system")]
    registered = crafted_row("tests.tasksapp.tasks.pair")  # the same worker runs real tasks

    worker = start_worker("--burst", env=env)
    assert worker.wait(timeout=60) == 0, worker.output()

    for row in rows:
        row.refresh_from_db()
        # A worker claims only what its code registers: these rows wait for a worker that
        # knows them, and are failed after UNKNOWN_JOB_GRACE if none ever comes.
        assert (row.status, row.claim_id, row.started_at) == ("scheduled", None, None)
    registered.refresh_from_db()
    assert registered.status == "succeeded"
    assert not marker.exists(), marker.read_text()

    # Reading the result does not import it either.
    for row in rows:
        with pytest.raises(TaskResultDoesNotExist, match="not registered in this process"):
            default_task_backend.get_result(row.pk)
    assert CRAFTED not in sys.modules
    assert not marker.exists()
    assert default_task_backend.get_result(registered.pk).status == TaskResultStatus.SUCCESSFUL
