"""The examples of docs/workflows.md run as written, and do what the page says they do.

Convention of the page: a ```python block is runnable code, and this test runs it; every other
fence (```py for an illustration that is not meant to run, such as a second definition of a
job, ```console for a shell, ```text for output) is left alone. Use ```python only for code that
runs as it stands, in the order of the page.

The blocks run in the order of the page, as one project would run them. A block whose first
line is ``# myapp/jobs.py`` (or ``# myapp/jobs.py (continued)``) is part of that module: it runs
in the ``__dict__`` of a module ``myapp.jobs``, put in ``sys.modules`` for the test. Every other
block runs in one namespace of the page, which sees only what the page's blocks import or define
(``from myapp.jobs import ...`` included), so a missing import fails here as it would in a
project. ``@job`` registers in the process-wide registry: the page's jobs get the names
``myapp.<function>``; the test refuses to start if any such name is registered already, and
unregisters every name the page added when it ends. After each block, what it enqueued runs to
its end with ``run_due_jobs()``; a block that defines ``test_*`` functions (the page's pytest
examples) has them called first. ``CHECKS`` then asserts, section by section, what the text
states; every section with runnable code must have a check, and every check a section, so an
edited page cannot go unchecked.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from django_jobs import registry
from django_jobs.jobtypes import registry as job_types
from django_jobs.models import Job, Workflow
from django_jobs.testing import run_due_jobs

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"
MODULE = "myapp.jobs"
MODULE_FILE = "# myapp/jobs.py"
FENCE = re.compile(r"^( *)```(\S*)\s*$")
#: The sections whose examples fail a member on purpose.
FAILING_ON_PURPOSE = {"When a member fails: the failure policy"}


@dataclass(frozen=True)
class Block:
    heading: str
    line: int  # of the first line of code, in the page
    code: str

    @property
    def in_module(self) -> bool:
        return self.code.startswith(MODULE_FILE)


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of ``text``, each with the heading of its section."""
    found: list[Block] = []
    heading = ""
    fence: str | None = None
    indent = ""
    start = 0
    code: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                indent, fence, start, code = match.group(1), match.group(2), number + 1, []
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
        elif line.strip() == "```":
            if fence == "python":
                found.append(Block(heading, start, "\n".join(code) + "\n"))
            fence = None
        else:
            # A block indented in a list item: its code without the indentation.
            code.append(line.removeprefix(indent))
    assert fence is None, f"{PAGE.name}: a code block opened on line {start - 1} is not closed"
    return found


# -- what the page states ------------------------------------------------------------------------


def members(workflow: Workflow, name: str, **data: Any) -> list[Job]:
    """The last attempts of the members of ``workflow`` running job ``myapp.<name>`` whose
    payload holds ``data``."""
    rows = [
        row for row in Job.objects.in_workflow(workflow.pk).filter(name=f"myapp.{name}")
        if all(row.data.get(key) == value for key, value in data.items())
    ]
    retried = {row.rescheduled_from_id for row in Job.objects.in_workflow(workflow.pk)}
    return [row for row in rows if row.pk not in retried]


def member(workflow: Workflow, name: str, **data: Any) -> Job:
    [row] = members(workflow, name, **data)
    return row


def check_chains(ns: dict[str, Any]) -> None:
    sales = ns["sales"]
    assert member(sales, "fetch_orders").result == [120, 80, 300]
    assert member(sales, "add_up").result == 500
    assert member(sales, "post_total").result == "#sales: 500 EUR"
    assert registry.workflow_status(sales.pk).name == "daily sales"


def check_chains_before_they_run(ns: dict[str, Any]) -> None:
    statuses = Job.objects.in_workflow(ns["sales"].pk).values_list("status", flat=True)
    assert sorted(statuses) == ["scheduled", "waiting", "waiting"]


def check_groups(ns: dict[str, Any]) -> None:
    image = ns["image_42"]
    assert member(image, "publish_image").result == [
        "thumbs/42-160.jpg", "thumbs/42-320.jpg", "thumbs/42-640.jpg",
    ]
    assert member(image, "tell_the_editor").status == "skipped"
    assert member(image, "remove_upload").result == {"succeeded": 3}
    assert registry.workflow_status(image.pk).status == "succeeded"


def check_graphs(ns: dict[str, Any]) -> None:
    catalogue = ns["catalogue"]
    rows = {name: Job.objects.get(pk=ns[name].pk)
            for name in ("download", "products", "prices", "index")}
    assert {row.workflow_id for row in rows.values()} == {catalogue.pk}
    assert rows["index"].result == {"products": 120, "prices": 118}
    # The diamond: A first, B and C after it, D once, after both.
    middle = (rows["products"], rows["prices"])
    assert rows["download"].finished_at <= min(row.started_at for row in middle)
    assert max(row.finished_at for row in middle) <= rows["index"].started_at
    assert len(members(catalogue, "rebuild_search_index")) == 1
    # after= outside a block: both jobs share a new workflow.
    orders = Job.objects.get(pk=ns["orders"].pk)
    total = Job.objects.get(pk=ns["total"].pk)
    assert orders.workflow_id == total.workflow_id is not None
    assert total.result == 500


def check_nesting(ns: dict[str, Any]) -> None:
    week = ns["week"]
    assert len(members(week, "add_up")) == 7
    assert member(week, "add_up_week").result == 3500
    assert member(week, "post_total").result == "#sales: 3500 EUR"


def check_failure_policy(ns: dict[str, Any]) -> None:
    problem = "myapp.make_thumbnail failed: ValueError: image 7 is smaller than 4000 px"
    for wf in (ns["stopped"], ns["carried_on"]):
        assert member(wf, "make_thumbnail").status == "failed"
        assert member(wf, "publish_image").status == "cancelled"
        assert member(wf, "tell_the_editor").status == "succeeded"
        assert registry.workflow_status(wf.pk).status == "failed"

    stopped = ns["stopped"]
    assert member(stopped, "tag_upload").status == "cancelled"
    first, second = member(stopped, "tell_the_editor").result
    assert first == problem
    assert second.startswith("myapp.tag_upload cancelled: cancelled: job ")

    carried_on = ns["carried_on"]
    assert member(carried_on, "scan_upload").status == "succeeded"
    assert member(carried_on, "tag_upload").result == ["beach", "sunset"]
    assert member(carried_on, "tell_the_editor").result == [problem]


def check_retries(ns: dict[str, Any]) -> None:
    fetch_rate = job_types.get("myapp.fetch_rate")
    assert (fetch_rate.max_attempts, fetch_rate.retry_delay) == (3, timedelta(seconds=30))


def check_cancelling(ns: dict[str, Any]) -> None:
    assert ns["cancelled"] == 6
    statuses = Job.objects.in_workflow(ns["replaced"].pk).values_list("status", flat=True)
    assert list(statuses) == ["cancelled"] * 6
    assert registry.workflow_status(ns["replaced"].pk).status == "cancelled"


def check_status(ns: dict[str, Any]) -> None:
    info = ns["info"]
    assert (info.status, info.progress, info.eta) == ("succeeded", 1.0, None)
    assert info.counts == {"succeeded": 3}
    after = {m.name: [str(pk) for pk in m.after] for m in info.members}
    ids = {m.name: str(m.id) for m in info.members}
    assert after == {
        "myapp.fetch_orders": [],
        "myapp.add_up": [ids["myapp.fetch_orders"]],
        "myapp.post_total": [ids["myapp.add_up"]],
    }


def check_testing(ns: dict[str, Any]) -> None:
    assert set(ns["_called"]) == {
        "test_the_conversion_waits_for_the_retry_of_the_rate",
        "test_eager_mode_runs_the_whole_chain_in_enqueue",
    }


#: Heading of a section -> what its text states, asserted once its last block has run and the
#: jobs it enqueued have run to their end.
CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "Chains": check_chains,
    "Groups": check_groups,
    "Graphs: `after=` and `with workflow(...)`": check_graphs,
    "Nesting": check_nesting,
    "When a member fails: the failure policy": check_failure_policy,
    "Retries": check_retries,
    "Cancelling a workflow": check_cancelling,
    "Status and progress": check_status,
    "Testing": check_testing,
}
#: The same, as the section's last block left things, before any job runs.
CHECKS_BEFORE_RUNNING: dict[str, Callable[[dict[str, Any]], None]] = {
    "Chains": check_chains_before_they_run,
}


# -- running the page ----------------------------------------------------------------------------


@pytest.fixture
def page_module() -> Iterator[types.ModuleType]:
    """``myapp.jobs``, empty, importable; afterwards gone, with every job the page defined."""
    taken = sorted(jt.name for jt in job_types if jt.name.startswith("myapp."))
    assert not taken, f"job names the page would define are registered already: {taken}"
    assert "myapp" not in sys.modules and MODULE not in sys.modules
    before = {jt.name for jt in job_types}
    package = types.ModuleType("myapp")
    package.__path__ = []
    module = types.ModuleType(MODULE)
    package.jobs = module
    sys.modules["myapp"], sys.modules[MODULE] = package, module
    try:
        yield module
    finally:
        sys.modules.pop(MODULE, None)
        sys.modules.pop("myapp", None)
        for name in {jt.name for jt in job_types} - before:
            job_types.unregister(name)


def run_block(
    block: Block,
    module: types.ModuleType,
    ns: dict[str, Any],
    before: Callable[[dict[str, Any]], None] | None = None,
) -> list[Job]:
    """Run ``block`` in ``myapp.jobs`` or in the page's namespace ``ns``; then ``before`` (a
    check of the state it left), the tests it defines and the jobs it left due. Returns the
    runs of those jobs."""
    names_before = set(ns)
    # Line numbers in tracebacks are the page's own.
    where = module.__dict__ if block.in_module else ns
    exec(compile("\n" * (block.line - 1) + block.code, str(PAGE), "exec"), where)
    if before is not None:
        before(ns)
    for name in sorted(set(ns) - names_before):
        if name.startswith("test_") and callable(ns[name]):
            ns[name]()
            ns["_called"].append(name)
    return run_due_jobs(schedule=False)


def test_every_example_of_the_workflows_page_runs_and_does_what_the_page_says(page_module):
    blocks = python_blocks(PAGE.read_text(encoding="utf-8"))
    sections = {block.heading for block in blocks}
    assert sections == set(CHECKS), (
        "every section of the page with ```python code needs a check, and every check a section: "
        f"without a check: {sorted(sections - set(CHECKS))}, "
        f"checks without a section: {sorted(set(CHECKS) - sections)}"
    )
    ns: dict[str, Any] = {"__name__": "docs_workflows_page", "_called": []}
    for index, block in enumerate(blocks):
        last_of_section = index + 1 == len(blocks) or blocks[index + 1].heading != block.heading
        before = CHECKS_BEFORE_RUNNING.get(block.heading) if last_of_section else None
        runs = run_block(block, page_module, ns, before)
        failed = [f"{run.name}: {run.error}" for run in runs if run.status == "failed"]
        if block.heading not in FAILING_ON_PURPOSE:
            assert not failed, f"{PAGE.name}, line {block.line}: a job failed: {failed}"
        if last_of_section:
            CHECKS[block.heading](ns)
