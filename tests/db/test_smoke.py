import pytest

from django_jobs import registry
from django_jobs.models import Job
from django_jobs.worker.loop import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_and_burst_worker_runs_job():
    echo = registry.get("jobsapp.echo")
    job = echo.enqueue(x=1)
    assert Job.objects.get(pk=job.pk).status == "scheduled"
    Worker(burst=True, install_signals=False).run()
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.result == {"data": {"x": 1}, "attempt": 1}


def test_run_returns_result():
    assert registry.get("jobsapp.echo").run(y=2) == {"data": {"y": 2}, "attempt": 1}
    job = Job.objects.get()
    assert job.status == "succeeded"
