from common import noop_body
from django.tasks import task


@task
def noop(n: int = 0, t: float | None = None) -> None:
    noop_body(t)
