from common import noop_body
from procrastinate.contrib.django import app


@app.task(name="noop")
def noop(n: int = 0, t: float | None = None) -> None:
    noop_body(t)
