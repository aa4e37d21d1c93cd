"""The harness adapter's app: one job (``jobs.py``) and the live counters (``telemetry.py``)."""
