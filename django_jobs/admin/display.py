"""How a job's state looks in the admin: one function feeds the HTML and the live JSON alike."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.utils.html import format_html
from django.utils.text import Truncator

from .. import clock
from ..models import Job, JobStatus
from .format import duration_words

#: Columns the list and the live endpoint read; the large ones (payload, result, error, meta)
#: stay in the database.
STATE_FIELDS = (
    "id", "name", "status", "progress", "progress_message", "eta", "run_at", "started_at",
    "finished_at", "cancel_requested_at", "worker",
)
MESSAGE_LENGTH = 80
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


def percent(job: Job) -> int:
    # A job that succeeded did all of its work, whether or not it reported progress.
    if job.status == JobStatus.SUCCEEDED:
        return 100
    return max(0, min(100, int(job.progress * 100)))


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
    }


def status_badge(job: Job) -> str:
    label = status_label(job)
    return format_html(
        '<span class="dj-badge dj-status-{}" data-dj-job="{}" data-dj-field="status">{}</span>',
        label, job.pk, label,
    )


def progress_bar(job: Job, now: datetime | None = None) -> str:
    now = now or clock.now()
    value = percent(job)
    return format_html(
        '<span class="dj-progress" data-dj-job="{}" data-dj-field="progress" data-dj-live="{}" '
        'data-dj-status="{}"><progress max="100" value="{}" aria-label="progress">{}%</progress>'
        '<span class="dj-percent">{}%</span></span>',
        job.pk, "true" if is_live(job, now) else "false", job.status, value, value, value,
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
