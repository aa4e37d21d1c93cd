"""``manage.py jobs``: look at and control jobs from the shell. Parses, calls
``django_jobs.registry``, prints. Exit statuses: 0 done, 1 refused or the job failed, 2 bad
input, 3 no such job (name or id), 130 interrupted while waiting. ``health``: 0 healthy, 1 a
check failed, 2 the jobs database is unreachable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError, ProgrammingError

from django_jobs import clock, registry
from django_jobs.control import HEALTH_MAX_WAIT
from django_jobs.exceptions import (
    AmbiguousJobId,
    InvalidJobState,
    JobAlreadyRunning,
    JobNotFound,
    JobStillRunning,
    JobTablesMissing,
    UnknownJob,
)
from django_jobs.humanize import counts_words, duration_words, parse_duration
from django_jobs.ids import short_id
from django_jobs.models.tables import MIGRATE_MESSAGE, is_missing_table
from django_jobs.types import JobStatusInfo, WorkerInfo, WorkflowInfo

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTERRUPTED = 130
#: ``health``: the jobs database did not answer (the other checks could not run).
EXIT_UNREACHABLE = 2
WAIT_POLL_INTERVAL = 0.2
#: With --wait, seconds a due job may wait before the command says no worker seems to serve it.
NO_WORKER_AFTER = 5.0
BAR_WIDTH = 30


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    delta = moment - now
    if abs(delta.total_seconds()) < 1:
        return "now"
    if delta.total_seconds() > 0:
        return f"in {duration_words(delta)}"
    return f"{duration_words(-delta)} ago"


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


class Command(BaseCommand):
    help = "Look at and control django-jobs: list, status, enqueue, cancel, stop, retry, ..."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

        def add(name: str, help: str, json_flag: bool = False) -> CommandParser:
            p = sub.add_parser(name, help=help, description=help)
            if json_flag:
                p.add_argument("--json", action="store_true", help="Print JSON.")
            return p

        add("list", "Registered jobs: schedule, next run, last outcome, running run.", True)
        p = add("status", "Where one job stands (ID: the UUID or its first 4+ characters).", True)
        p.add_argument("job_id", metavar="ID")
        p = add("workflow", "Where one workflow stands: status, progress, ETA and its members "
                "(ID: the UUID or its first 4+ characters).", True)
        p.add_argument("workflow_id", metavar="ID")
        p.add_argument("--cancel", action="store_true",
                       help="Cancel every member not finished yet (running ones are asked to "
                       "stop).")
        p = add("enqueue", "Enqueue a job by name.", True)
        p.add_argument("name", metavar="NAME")
        p.add_argument("--data", default="{}", help="Payload as a JSON object.")
        p.add_argument("--delay", help="Run after this long: seconds, or 30s, 5m, 1h30m, 2d.")
        p.add_argument("--queue", help="Queue (default: the job's).")
        p.add_argument("--priority", type=int, help="Priority (default: the job's).")
        p.add_argument("--wait", action="store_true",
                       help="Wait for the job to end, showing its progress; exit 1 unless it "
                       "succeeds.")
        p.add_argument("--timeout", type=float, help="With --wait: give up after SECONDS.")
        p = add("cancel", "Cancel a job by id, or every pending job of a name (at once).")
        p.add_argument("target", metavar="ID_OR_NAME")
        p = add("stop", "Cancel, then wait until the job has stopped.", True)
        p.add_argument("target", metavar="ID_OR_NAME")
        p.add_argument("--timeout", type=float, default=30.0, help="Seconds to wait (30).")
        p = add("retry", "Schedule a new run of a finished job.", True)
        p.add_argument("job_id", metavar="ID")
        p = add("succeed", "Record that a job's work was done elsewhere.", True)
        p.add_argument("job_id", metavar="ID")
        p.add_argument("--result", default="null", help="Result as JSON.")
        p = add("fail", "Record that a job's work failed elsewhere.", True)
        p.add_argument("job_id", metavar="ID")
        p.add_argument("--message", default="failed elsewhere")
        p.add_argument("--retry", action="store_true", help="Schedule a retry if attempts remain.")
        add("prune", "Delete finished jobs older than their keep.", True)
        add("locks", "Held job type locks.", True)
        add("limits", "Concurrency and rate limits, and their use now.", True)
        add("inspect", "Queue depths, the oldest due job, running jobs and their workers.", True)
        add("workers", "Worker processes: host, pid, queues, runs held, last heartbeat, state.",
            True)
        p = add("health", "Exit 0 if jobs get run: the database answers, a worker beats, and no "
                "due job waits too long; 1 if a check fails, 2 if the database is unreachable.",
                True)
        p.add_argument("--max-wait", type=float, default=HEALTH_MAX_WAIT, metavar="SECONDS",
                       help=f"Longest wait of the oldest due job ({HEALTH_MAX_WAIT:g}).")
        for name, what in (("pause", "recurring job"), ("resume", "recurring job"),
                           ("pause-queue", "queue"), ("resume-queue", "queue")):
            verb = name.split("-")[0]
            p = add(name, f"{verb.capitalize()} one or more {what}s.")
            p.add_argument("names", nargs="+", metavar="QUEUE" if "queue" in name else "NAME")

    def handle(self, *args: Any, **options: Any) -> None:
        command = options["subcommand"]
        self.as_json = options.get("json", False)
        try:
            getattr(self, "do_" + command.replace("-", "_"))(options)
        except (UnknownJob, JobNotFound) as exc:
            raise CommandError(str(exc), returncode=EXIT_NOT_FOUND) from None
        except (InvalidJobState, JobAlreadyRunning, JobStillRunning) as exc:
            raise CommandError(str(exc), returncode=EXIT_FAILED) from None
        except (AmbiguousJobId, TypeError, ValueError) as exc:
            raise CommandError(str(exc), returncode=EXIT_USAGE) from None
        except JobTablesMissing as exc:
            raise CommandError(str(exc), returncode=EXIT_FAILED) from None
        except (OperationalError, ProgrammingError) as exc:
            if is_missing_table(exc):
                raise CommandError(MIGRATE_MESSAGE, returncode=EXIT_FAILED) from None
            raise

    def emit(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2, default=str))

    # -- reading --------------------------------------------------------------------------

    def do_list(self, options: dict[str, Any]) -> None:
        infos = registry.list()
        if self.as_json:
            return self.emit([info.as_dict() for info in infos])
        now = clock.now()
        rows = []
        for info in infos:
            if info.recurring:
                schedule = f"{info.cron}  ({info.schedule})" if info.cron else info.schedule
            else:
                schedule = "-"
            last = info.last_run
            running = info.running
            state = "disabled" if not info.enabled else "paused" if info.paused else "enabled"
            rows.append([
                info.name, schedule, _when(info.next_run, now),
                f"{last.status} {_when(last.finished_at, now)}" if last else "-",
                f"{running.progress:.0%} {running.message}".strip() if running else "-",
                state,
            ])
        self.stdout.write(_table(rows, ["NAME", "SCHEDULE", "NEXT RUN", "LAST RUN", "RUNNING",
                                        "STATE"]))

    def do_status(self, options: dict[str, Any]) -> None:
        info = registry.status(options["job_id"])
        if self.as_json:
            return self.emit(info.as_dict())
        self.stdout.write(self.describe(info))

    def describe(self, info: JobStatusInfo) -> str:
        now = clock.now()
        lines = [
            ("id", str(info.id)),
            ("name", info.name),
            ("status", f"{info.status} (attempt {info.attempt}/{info.max_attempts})"
                       + (", cancel requested" if info.cancel_requested and not info.finished
                          else "")),
            ("queue", f"{info.queue} (priority {info.priority})"),
            ("progress", f"{info.progress:.0%} {info.message}".strip()),
        ]
        if info.remaining_words:
            lines.append(("eta", f"in {info.remaining_words}"))
        if info.elapsed_words:
            lines.append(("elapsed", info.elapsed_words))
        if info.status == "scheduled":
            lines.append(("run at", f"{info.run_at.isoformat()} ({_when(info.run_at, now)})"))
        if info.worker:
            lines.append(("worker", info.worker))
        lines.append(("payload", json.dumps(info.data)))
        if info.result is not None:
            lines.append(("result", json.dumps(info.result, default=str)))
        if info.error:
            lines.append(("error", info.error.split("\n", 1)[0]))
        width = max(len(key) for key, _ in lines)
        return "\n".join(f"{key.ljust(width)}  {value}" for key, value in lines)

    def do_workflow(self, options: dict[str, Any]) -> None:
        info = registry.workflow_status(options["workflow_id"])
        if options["cancel"]:
            return self.cancel_workflow(info)
        if self.as_json:
            return self.emit(info.as_dict())
        self.stdout.write(self.describe_workflow(info))

    def cancel_workflow(self, info: WorkflowInfo) -> None:
        name = f"{info.id} ({info.name})" if info.name else str(info.id)
        if info.status != "running":
            raise CommandError(f"workflow {name} is {info.status}; nothing to cancel",
                               returncode=EXIT_FAILED)
        running = info.counts.get("running", 0)
        cancelled = registry.cancel_workflow(info.id)
        if self.as_json:
            return self.emit({"cancelled": cancelled, "asked_to_stop": running})
        line = f"Cancelled {cancelled} job{'s' if cancelled != 1 else ''} of workflow {name}."
        if running:
            line += (f" Asked {running} running job{'s' if running != 1 else ''} to stop; "
                     f"{'it ends' if running == 1 else 'they end'} cancelled at "
                     f"{'its' if running == 1 else 'their'} next check.")
        self.stdout.write(line)

    @staticmethod
    def describe_workflow(info: WorkflowInfo) -> str:
        now = clock.now()
        lines = [
            ("id", str(info.id)),
            ("name", info.name or "-"),
            ("status", info.status),
            ("progress", f"{info.progress:.0%}"),
        ]
        if info.eta is not None and info.status == "running":
            lines.append(("eta", "any moment" if info.eta <= now else _when(info.eta, now)))
        lines += [
            ("on failure", info.on_failure),
            ("members", counts_words(info.counts)),
            ("created", f"{info.created_at.isoformat()} ({_when(info.created_at, now)})"),
        ]
        if info.cancelled_at is not None:
            lines.append(("cancelled", info.cancelled_at.isoformat()))
        if info.finished_at is not None:
            lines.append(("finished", info.finished_at.isoformat()))
        width = max(len(key) for key, _ in lines)
        head = "\n".join(f"{key.ljust(width)}  {value}" for key, value in lines)
        rows = []
        for member, _depth in info.in_dependency_order():
            # A job that succeeded did all of its work, whether or not it reported progress.
            progress = 1.0 if member.status == "succeeded" else member.progress
            message = member.message.split("\n", 1)[0][:60]
            rows.append([
                short_id(member.id), member.name, member.status, f"{progress:.0%}",
                " ".join(short_id(pk) for pk in member.after) or "-", message or "-",
            ])
        if not rows:
            return head
        return head + "\n\n" + _table(
            rows, ["ID", "NAME", "STATUS", "PROGRESS", "AFTER", "MESSAGE"])

    def do_limits(self, options: dict[str, Any]) -> None:
        limits = registry.limits()
        if self.as_json:
            return self.emit([{**info.as_dict(), "in_use": info.in_use} for info in limits])
        if not limits:
            self.stdout.write("No job or queue has a concurrency or rate limit.")
            return
        rows = [
            [info.scope, info.name + (" (per key)" if info.keyed else ""),
             ", ".join(filter(None, [
                 f"concurrency {info.concurrency}" if info.concurrency is not None else "",
                 f"rate {info.rate_limit}" if info.rate_limit is not None else "",
             ])),
             info.in_use, ", ".join(info.keys_at_limit) or "-"]
            for info in limits
        ]
        self.stdout.write(_table(rows, ["SCOPE", "NAME", "LIMIT", "IN USE", "AT LIMIT"]))

    def do_locks(self, options: dict[str, Any]) -> None:
        locks = registry.locks()
        if self.as_json:
            return self.emit([lock.as_dict() for lock in locks])
        if not locks:
            self.stdout.write("No locks are held.")
            return
        now = clock.now()
        rows = [
            [lock.key, f"{lock.job_name or '?'} {lock.job_id or ''}".strip(),
             lock.job_status or "-", lock.worker or "-",
             "expired" if lock.expired else (
                 _when(lock.locked_until, now) if lock.locked_until else "while its worker lives"
             )]
            for lock in locks
        ]
        self.stdout.write(_table(rows, ["KEY", "HOLDER", "STATUS", "WORKER", "EXPIRES"]))

    def do_inspect(self, options: dict[str, Any]) -> None:
        report = registry.inspect()
        if self.as_json:
            return self.emit(report.as_dict())
        statuses = ["scheduled", "running", "succeeded", "failed", "cancelled", "skipped"]
        rows = [
            [q.queue + (" (paused)" if q.paused else ""), str(q.due),
             *[str(q.counts.get(s, 0)) for s in statuses],
             duration_words(q.oldest_due_age) if q.oldest_due_age is not None else "-"]
            for q in report.queues
        ]
        headers = ["QUEUE", "DUE", *[s.upper() for s in statuses], "OLDEST DUE"]
        self.stdout.write(_table(rows, headers) if rows else "No jobs.")
        oldest = report.oldest_due_age
        self.stdout.write(
            f"\n{report.due} due; oldest due job waiting "
            f"{duration_words(oldest) if oldest is not None else '-'}"
        )
        if report.running:
            self.stdout.write("\nRunning:")
            rows = [[r.name, str(r.id), r.worker, f"{r.progress:.0%} {r.message}".strip(),
                     _when(r.started_at, report.at)] for r in report.running]
            self.stdout.write(_table(rows, ["NAME", "ID", "WORKER", "PROGRESS", "STARTED"]))
        if report.workers:
            self.stdout.write("\nWorkers:")
            self.stdout.write(self.workers_table(report.workers))

    def do_workers(self, options: dict[str, Any]) -> None:
        workers = registry.workers()
        if self.as_json:
            return self.emit([worker.as_dict() for worker in workers])
        if not workers:
            self.stdout.write("No worker process has a row: is `manage.py runjobs` running?")
            return
        self.stdout.write(self.workers_table(workers))

    @staticmethod
    def workers_table(workers: Iterable[WorkerInfo]) -> str:
        rows = []
        for w in workers:
            state = w.state + (" (stale)" if w.stale else "")
            rows.append([
                w.worker, w.kind, state, ",".join(w.queues) or "*",
                f"{w.busy}/{w.concurrency}", str(w.running),
                f"{duration_words(w.heartbeat_age)} ago", w.version or "-",
                w.started_at.isoformat(timespec="seconds"),
            ])
        return _table(rows, ["WORKER", "KIND", "STATE", "QUEUES", "BUSY", "RUNNING",
                             "HEARTBEAT", "VERSION", "STARTED"])

    def do_health(self, options: dict[str, Any]) -> None:
        if options["max_wait"] < 0:
            raise CommandError("--max-wait must be 0 or more seconds", returncode=EXIT_USAGE)
        health = registry.health(max_wait=options["max_wait"])
        if self.as_json:
            self.emit(health.as_dict())
        else:
            for check in health.checks:
                self.stdout.write(f"{check.name}: {'ok' if check.ok else 'FAIL'}: {check.detail}")
        if not health.reachable:
            raise SystemExit(EXIT_UNREACHABLE)
        if not health.ok:
            raise SystemExit(EXIT_FAILED)

    # -- acting ---------------------------------------------------------------------------

    def do_enqueue(self, options: dict[str, Any]) -> None:
        data = self.json_argument(options["data"], "--data")
        if not isinstance(data, dict):
            raise CommandError("--data must be a JSON object, e.g. '{\"user_id\": 7}'",
                               returncode=EXIT_USAGE)
        for key in ("queue", "priority"):
            if options[key] is not None:
                data[key] = options[key]
        if options["delay"]:
            data["delay"] = parse_duration(options["delay"])
        job = registry.enqueue(options["name"], **data)
        if not options["wait"]:
            if self.as_json:
                return self.emit(registry.status(job.pk).as_dict())
            self.stdout.write(f"{job.pk}")
            return
        info = self.wait(job.pk, options["timeout"])
        if self.as_json:
            self.emit(info.as_dict())
        if info.status in ("succeeded", "skipped"):
            if not self.as_json and info.result is not None:
                self.stdout.write(json.dumps(info.result, default=str))
            return
        first_line = info.error.split("\n", 1)[0] if info.error else ""
        raise CommandError(f"job {info.id} {info.status}: {first_line}".rstrip(": "),
                           returncode=EXIT_FAILED)

    def wait(self, job_id: Any, timeout: float | None) -> JobStatusInfo:
        """Poll until the job ends, drawing a progress bar (a line per change if not a TTY)."""
        started = time.monotonic()
        deadline = started + timeout if timeout else None
        since = clock.now()
        warned = False
        tty = self.stdout.isatty() and not self.as_json
        last_line = None
        try:
            while True:
                info = registry.status(job_id)
                if (not warned and info.status == "scheduled"
                        and time.monotonic() - started >= NO_WORKER_AFTER
                        and info.run_at <= clock.now()):
                    warned = True
                    if not registry.queue_served_since(info.queue, since):
                        self.stderr.write(
                            f"no worker has started a job of queue {info.queue!r} in the last "
                            f"{NO_WORKER_AFTER:g} s: is `manage.py runjobs` running for that "
                            "queue? Still waiting (Ctrl-C stops waiting)."
                        )
                if not self.as_json:
                    line = self.progress_line(info)
                    if tty:
                        self.stdout.write("\r\033[K" + line, ending="")
                        self.stdout.flush()
                    elif line != last_line:
                        self.stdout.write(line)
                    last_line = line
                if info.finished:
                    if tty:
                        self.stdout.write("")
                    return info
                if deadline is not None and time.monotonic() >= deadline:
                    raise CommandError(
                        f"job {job_id} still {info.status} after {timeout:g}s; not waiting "
                        "any longer (it goes on)", returncode=EXIT_FAILED,
                    )
                time.sleep(WAIT_POLL_INTERVAL)
        except KeyboardInterrupt:
            if tty:
                self.stdout.write("")
            raise CommandError(
                f"stopped waiting; job {job_id} goes on (stop it with: manage.py jobs stop "
                f"{job_id})", returncode=EXIT_INTERRUPTED,
            ) from None

    @staticmethod
    def progress_line(info: JobStatusInfo) -> str:
        if info.status == "scheduled":
            return f"{info.name}: waiting for a worker"
        filled = int(round(info.progress * BAR_WIDTH))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        parts = [f"[{bar}] {info.progress:4.0%}"]
        if info.message:
            parts.append(info.message)
        if info.status == "running" and info.remaining_words:
            parts.append(f"ETA {info.remaining_words}")
        if info.finished:
            parts.append(f"{info.status} in {info.elapsed_words or '0 s'}")
        return "  ".join(parts)

    def do_cancel(self, options: dict[str, Any]) -> None:
        target = options["target"]
        count = registry.cancel(target)
        if count == 0 and target not in registry:
            status = registry.status(target).status
            raise CommandError(f"job {target} is {status}; nothing to cancel",
                               returncode=EXIT_FAILED)
        self.stdout.write(f"Cancelled {count} job{'s' if count != 1 else ''}.")

    def do_stop(self, options: dict[str, Any]) -> None:
        target = options["target"]
        if target not in registry:
            info = registry.status(target)
            if info.finished:
                raise CommandError(f"job {info.id} is {info.status}; nothing to stop",
                                   returncode=EXIT_FAILED)
        infos = registry.stop(target, timeout=options["timeout"])
        if self.as_json:
            return self.emit([info.as_dict() for info in infos])
        for info in infos:
            self.stdout.write(f"{info.id} {info.name}: {info.status}")
        if not infos:
            self.stdout.write("Nothing was pending.")

    def do_retry(self, options: dict[str, Any]) -> None:
        job = registry.retry(options["job_id"])
        if self.as_json:
            return self.emit(registry.status(job.pk).as_dict())
        self.stdout.write(f"{job.pk}")

    def do_succeed(self, options: dict[str, Any]) -> None:
        result = self.json_argument(options["result"], "--result")
        self.report(registry.succeed(options["job_id"], result=result))

    def do_fail(self, options: dict[str, Any]) -> None:
        self.report(registry.fail(options["job_id"], options["message"], retry=options["retry"]))

    def report(self, info: JobStatusInfo) -> None:
        if self.as_json:
            return self.emit(info.as_dict())
        self.stdout.write(f"{info.id} {info.name}: {info.status}")

    def do_prune(self, options: dict[str, Any]) -> None:
        deleted = registry.prune()
        if self.as_json:
            return self.emit({"deleted": deleted})
        self.stdout.write(f"Deleted {deleted} finished job{'s' if deleted != 1 else ''}.")

    def do_pause(self, options: dict[str, Any]) -> None:
        self.each(options["names"], registry.pause, "Paused", job_names=True)

    def do_resume(self, options: dict[str, Any]) -> None:
        self.each(options["names"], registry.resume, "Resumed", job_names=True)

    def do_pause_queue(self, options: dict[str, Any]) -> None:
        self.each(options["names"], registry.pause_queue, "Paused queue")

    def do_resume_queue(self, options: dict[str, Any]) -> None:
        self.each(options["names"], registry.resume_queue, "Resumed queue")

    def each(self, names: list[str], action: Any, done: str, job_names: bool = False) -> None:
        for name in names:
            if not name.strip():
                raise CommandError("names must not be empty", returncode=EXIT_USAGE)
        if job_names:
            for name in names:
                registry.get(name)  # all names known before anything changes
        for name in names:
            action(name)
            self.stdout.write(f"{done} {name}.")

    @staticmethod
    def json_argument(text: str, option: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{option} is not valid JSON: {exc.msg} at line {exc.lineno} "
                               f"column {exc.colno}", returncode=EXIT_USAGE) from None

