"""How a job's state looks in the admin: one function feeds the HTML and the live JSON alike."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from .. import clock
from ..humanize import duration_words
from ..models import Job, JobStatus

#: Columns the list and the live endpoint read; the large ones (payload, result, error, meta)
#: stay in the database.
STATE_FIELDS = (
    "id", "name", "status", "progress", "progress_message", "eta", "run_at", "started_at",
    "finished_at", "cancel_requested_at", "worker",
)
MESSAGE_LENGTH = 80
ERROR_LINE_LENGTH = 120
DASH = "\u2014"
# Control characters (ANSI colour codes, NUL, ...) are shown as escapes, never passed to the page.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def visible(text: str) -> str:
    """``text`` with control characters spelled out (``\\x1b``); HTML escaping comes later."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def status_label(job: Job) -> str:
    if job.status == JobStatus.RUNNING and job.cancel_requested_at is not None:
        return "cancelling"
    return str(JobStatus(job.status).label) if job.status in JobStatus.values else job.status


def retry_note(job: Job) -> str:
    """For a failed run: "will retry" while a later attempt is pending, else "final"."""
    if job.status != JobStatus.FAILED:
        return ""
    return "will retry" if getattr(job, "retry_pending", False) else "final"


def when(moment: datetime | None) -> str:
    """A time to the second, in the current time zone: ``2026-05-04 14:03:22``."""
    if moment is None:
        return DASH
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


def title(job: Job) -> str:
    """What the job page's heading and the browser tab say: ``name (status) id``."""
    return f"{visible(job.name)} ({status_label(job)}) {job.pk}"


def error_line(text: str | None) -> str:
    """The first line of an error: the exception and its message."""
    return visible((text or "").strip().split("\n", 1)[0])


def error_kind(text: str | None) -> str:
    """The exception class of an error's first line (``RuntimeError: card declined``)."""
    line = error_line(text)
    return line.split(": ", 1)[0][:80] if ": " in line else line[:80]


def percent(job: Job) -> int:
    return percent_of(job.status, job.progress)


def percent_of(status: str, progress: float) -> int:
    # A job that succeeded did all of its work, whether or not it reported progress.
    if status == JobStatus.SUCCEEDED:
        return 100
    return max(0, min(100, int(progress * 100)))


def elapsed_words(job: Job, now: datetime) -> str:
    if job.started_at is None:
        return DASH
    end = job.finished_at or (now if job.status == JobStatus.RUNNING else None)
    if end is None:
        return DASH
    return duration_words(end - job.started_at)


def eta_words(job: Job, now: datetime) -> str:
    if job.status != JobStatus.RUNNING or job.eta is None:
        return DASH
    if job.eta <= now:
        return "any moment"
    return "in " + duration_words(job.eta - now)


def is_live(job: Job, now: datetime) -> bool:
    """Worth polling: running, or scheduled and already due (a worker may take it any time)."""
    if job.status == JobStatus.RUNNING:
        return True
    return job.status == JobStatus.SCHEDULED and job.run_at <= now


def state(job: Job, now: datetime | None = None) -> dict[str, Any]:
    """The changing part of a job, as plain values (the live endpoint sends exactly this)."""
    now = now or clock.now()
    return {
        "id": str(job.pk),
        "status": job.status,
        "status_label": status_label(job),
        "percent": percent(job),
        "message": visible(job.progress_message or ""),
        "eta": eta_words(job, now),
        "elapsed": elapsed_words(job, now),
        "worker": job.worker or DASH,
        "live": is_live(job, now),
        "retry": retry_note(job),
        "title": title(job),
        "started_at": when(job.started_at),
        "finished_at": when(job.finished_at),
    }


def status_badge(job: Job) -> str:
    return format_html(
        '{}<span class="dj-note" data-dj-job="{}" data-dj-field="retry">{}</span>',
        badge(job.pk, status_label(job)), job.pk, retry_note(job),
    )


def badge(key: Any, label: str) -> str:
    """A status badge the live script keeps up to date (``key``: a job's or workflow's id)."""
    return format_html(
        '<span class="dj-badge dj-status-{}" data-dj-job="{}" data-dj-field="status">{}</span>',
        label, key, label,
    )


def error_summary(job: Job) -> str:
    """The first line of a failed run's error, for the list (full text in the tooltip)."""
    head = getattr(job, "error_head", None)
    if job.status != JobStatus.FAILED or not head:
        return ""
    line = error_line(head)
    return format_html(
        '<span class="dj-error-line" title="{}">{}</span>',
        line, Truncator(line).chars(ERROR_LINE_LENGTH),
    )


def progress_bar(job: Job, now: datetime | None = None) -> str:
    now = now or clock.now()
    return bar(job.pk, job.status, percent(job), is_live(job, now))


def bar(key: Any, status: str, value: int, live: bool = False) -> str:
    """A progress bar with its percentage; ``live`` marks it for the job list's poll."""
    return format_html(
        '<span class="dj-progress" data-dj-job="{}" data-dj-field="progress" data-dj-live="{}" '
        'data-dj-status="{}"><progress max="100" value="{}" aria-label="progress">{}%</progress>'
        '<span class="dj-percent">{}%</span></span>',
        key, "true" if live else "false", status, value, value, value,
    )


def message(job: Job) -> str:
    text = visible(job.progress_message or "")
    return format_html(
        '<span class="dj-message" data-dj-job="{}" data-dj-field="message" title="{}">{}</span>',
        job.pk, text, Truncator(text).chars(MESSAGE_LENGTH),
    )


def live_text(job: Job, field: str, text: str) -> str:
    return format_html(
        '<span data-dj-job="{}" data-dj-field="{}">{}</span>', job.pk, field, text
    )


def pretty_json(value: Any) -> str:
    """JSON indented for reading; escaping is left to ``format_html`` by the caller."""
    if value in (None, {}, []):
        return ""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def pre(text: str, css_class: str = "") -> str:
    if not text:
        return DASH
    return format_html('<pre class="dj-pre {}">{}</pre>', css_class, visible(text))
