"""How many chapters a test may execute at once, and with how many threads: one kernel per core in all.

``python -m pytest`` runs on two pytest-xdist workers (``-n 2`` in pyproject.toml), each one test file at a time, so
the tests that execute chapters share the machine's cores among the workers: with 2 cores and 2 workers each runs
one chapter at a time; run alone (``-n 0`` or one test file), a test runs one chapter per core. Every kernel, and
torch in the test processes, uses ``THREADS`` threads (set through ``OMP_NUM_THREADS`` in ``conftest.py``), so the
chapters running at once never ask for more threads than there are cores.
"""

from __future__ import annotations

import os

from compresskit.checks import available_cores

WORKERS = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
PARALLEL = max(1, available_cores() // WORKERS)  # chapters one test executes at once
THREADS = max(1, available_cores() // (WORKERS * PARALLEL))  # torch threads in each of them
