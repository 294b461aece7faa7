"""The garbage collector's policy in a serving process: long-lived objects are frozen, requests are not scanned
for cycles they do not make.

CPython's cyclic collector scans every tracked object it holds. In a warm predict container almost all of them
live as long as the process: modules, Powertools and pydantic's schemas, scikit-learn and SciPy once a model is
loaded, the models themselves. A full collection there took ~98 ms, and 2 to 8 of 20 10,000-row requests had
one. `gc.freeze()` moves every object alive at that moment into a permanent generation that collections skip;
it is called once start-up is over and again after each model load, so what is frozen is what stays. A frozen object is still freed by reference counting when released: a model evicted from the cache goes
at once, the service's pipelines holding no reference cycle (tests/test_hot_path.py checks it). Only a cycle
that happened to be alive at a freeze would never be collected, a bounded cost paid once per model load.

The young generation's threshold is raised from 700 to 50,000 allocations. A 10,000-row request allocates a
list per row, alive until the response is built: at 700 the collector ran ~50 young and ~5 middle collections
per such request, each scanning those live rows to find no garbage (35 ms a request measured, with everything
else frozen), and a full one every few requests; at 50,000, about one young collection every ten requests
(2 ms a request). A request's garbage is freed by reference counting anyway, as soon as it is released.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def after_startup() -> None:
    """Call at the end of a function module's import: what it imported is frozen and the thresholds raised."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    gc.freeze()


def after_model_loaded() -> None:
    """Call once a model is loaded into the cache (outside any lock, after it is stored): it is frozen with
    everything alive now, so collections stop scanning it."""
    gc.freeze()
