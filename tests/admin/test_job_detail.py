"""The job page: payload, result and error escaped and readable; its history; no editing."""

from __future__ import annotations

from django.urls import reverse

from django_jobs.models import Job


def change_url(job: Job) -> str:
    return reverse("admin:django_jobs_job_change", args=[job.pk])


def test_a_script_in_the_payload_result_error_and_message_renders_as_text(admin_client, make_job):
    evil = "<script>alert('x')</script>"
    job = make_job(f"jobsapp.{evil}", "failed", data={"html": evil, evil: 1},
                   result={"echo": evil}, error=f"Traceback\nValueError: {evil}",
                   progress_message=evil, meta={"note": evil})
    html = admin_client.get(change_url(job)).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    list_html = admin_client.get(reverse("admin:django_jobs_job_changelist")).content.decode()
    assert "<script>alert" not in list_html
    assert "&lt;script&gt;" in list_html


def test_payload_and_result_are_pretty_printed_json(admin_client, make_job):
    job = make_job("jobsapp.echo", "succeeded", data={"user_id": 7, "tags": ["a", "b"]},
                   result={"sent": 3})
    html = admin_client.get(change_url(job)).content.decode()
    assert '<pre class="dj-pre dj-json">{\n  &quot;tags&quot;: [\n    &quot;a&quot;,' in html
    assert "&quot;sent&quot;: 3" in html


def test_the_traceback_keeps_its_lines_and_control_characters_are_spelled_out(
    admin_client, make_job
):
    error = 'Traceback (most recent call last):\n  File "x.py", line 1\n\x1b[31mRuntimeError\x1b[0m'
    job = make_job("jobsapp.explode", "failed", error=error)
    html = admin_client.get(change_url(job)).content.decode()
    assert '<pre class="dj-pre dj-error">Traceback (most recent call last):\n  File' in html
    assert "\x1b" not in html
    assert "\\x1b[31mRuntimeError\\x1b[0m" in html


def test_the_page_shows_the_chain_of_runs(admin_client, make_job):
    first = make_job("jobsapp.flaky", "failed", attempt=1)
    second = make_job("jobsapp.flaky", "failed", attempt=2, rescheduled_from=first)
    third = make_job("jobsapp.flaky", "succeeded", attempt=3, rescheduled_from=second)
    html = admin_client.get(change_url(second)).content.decode()
    chain = html[html.index('<ol class="dj-chain">'):]
    chain = chain[:chain.index("</ol>")]
    positions = [chain.index(str(job.pk)[:8]) for job in (first, second, third)]
    assert positions == sorted(positions)
    assert "this run" in chain


def test_rows_cannot_be_added_edited_or_deleted(admin_client, make_job):
    job = make_job()
    html = admin_client.get(change_url(job)).content.decode()
    assert 'name="_save"' not in html
    assert admin_client.post(change_url(job), {"name": "changed"}).status_code == 403
    assert admin_client.get(reverse("admin:django_jobs_job_add")).status_code == 403
    delete = reverse("admin:django_jobs_job_delete", args=[job.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    job.refresh_from_db()
    assert job.name == "jobsapp.noop"


def test_buttons_match_the_state_of_the_job(admin_client, make_job):
    scheduled = make_job()
    html = admin_client.get(change_url(scheduled)).content.decode()
    assert 'data-action="cancel"' in html and 'data-action="run-now"' in html
    assert 'data-action="retry"' not in html
    failed = make_job(status="failed")
    html = admin_client.get(change_url(failed)).content.decode()
    assert 'data-action="retry"' in html
    assert 'data-action="cancel"' not in html and 'data-action="run-now"' not in html
