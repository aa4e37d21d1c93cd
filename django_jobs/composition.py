"""Workflows as values: steps, chains and groups, built before anything is written.

``fn.step(**data)`` is one job to run, with its payload and enqueue options; ``chain()`` runs
steps one after another, ``group()`` side by side with callbacks once they have all ended. They
nest (a chain of groups, a group of chains) and are written by ``.enqueue()``: every row in one
transaction, each dependency a ``JobDependency`` row (see ``django_jobs.workflows``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobtypes import JobType
    from .models import Workflow

__all__ = ["Chain", "Group", "Node", "Step", "chain", "group"]


class _Composable:
    def enqueue(self, *, name: str = "", on_failure: str = "cancel") -> Workflow:
        """Write this workflow: every member, in the caller's transaction, all or nothing.

        ``on_failure`` is what a member's final failure does: ``"cancel"`` (everything not
        finished yet is cancelled; ``on_failure`` and ``on_finish`` callbacks still run) or
        ``"continue"`` (only what depended on the failed member is cancelled).
        """
        # Imported when called: this module loads with the package, while Django populates its
        # apps, and the module that writes rows needs the models.
        from .enqueuing import enqueue_workflow

        return enqueue_workflow(self, name=name, on_failure=on_failure)


@dataclass(frozen=True, eq=False)
class Step(_Composable):
    """One job of a workflow: its type, its payload and its enqueue options."""

    job_type: JobType
    data: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<Step {self.job_type.name}>"


@dataclass(frozen=True, eq=False)
class Chain(_Composable):
    """Each item starts once the one before it succeeded."""

    items: tuple[Node, ...]

    def __repr__(self) -> str:
        return f"<Chain of {len(self.items)}>"


@dataclass(frozen=True, eq=False)
class Group(_Composable):
    """Items side by side; the callbacks run once every item has ended.

    ``on_success`` runs if they all succeeded (or were skipped), ``on_failure`` if at least one
    failed or was cancelled, ``on_finish`` in either case.
    """

    items: tuple[Node, ...]
    on_success: Node | None = None
    on_failure: Node | None = None
    on_finish: Node | None = None

    def __repr__(self) -> str:
        return f"<Group of {len(self.items)}>"


Node = Step | Chain | Group


def _nodes(items: Iterable[Any], what: str) -> tuple[Node, ...]:
    flat: list[Any] = []
    for item in items:
        # group([a, b]) and group(a, b) both read naturally.
        if isinstance(item, (list, tuple)):
            flat.extend(item)
        else:
            flat.append(item)
    for index, item in enumerate(flat):
        if not isinstance(item, (Step, Chain, Group)):
            raise TypeError(
                f"{what}() item {index} is {type(item).__name__}; each must be a step "
                "(fn.step(...)), a chain() or a group()"
            )
    if not flat:
        raise ValueError(f"{what}() needs at least one step")
    return tuple(flat)


def _callback(value: Any, what: str) -> Node | None:
    if value is None or isinstance(value, (Step, Chain, Group)):
        return value
    raise TypeError(
        f"group({what}=...) must be a step (fn.step(...)), a chain() or a group(), "
        f"not {type(value).__name__}"
    )


def chain(*items: Node | Iterable[Node]) -> Chain:
    """Run ``items`` one after another; each sees the result of the one before it
    (``ctx.previous_result``)."""
    return Chain(_nodes(items, "chain"))


def group(
    *items: Node | Iterable[Node],
    on_success: Node | None = None,
    on_failure: Node | None = None,
    on_finish: Node | None = None,
) -> Group:
    """Run ``items`` side by side, then the callbacks that apply (``ctx.dependency_results()``
    gives them the items' results, in order)."""
    return Group(
        _nodes(items, "group"),
        on_success=_callback(on_success, "on_success"),
        on_failure=_callback(on_failure, "on_failure"),
        on_finish=_callback(on_finish, "on_finish"),
    )
