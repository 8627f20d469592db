import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from loopline.metrics import observe_all


def samples(histogram):
    return {(s.name, s.labels.get("le")): s.value for metric in histogram.collect() for s in metric.samples
            if not s.name.endswith("_created")}  # fmt: skip


def test_observe_all_counts_like_observe_one_by_one():
    values = np.array([0.0, 0.001, 0.0015, 0.005, 0.7, 3.0, 100.0, 0.025])
    one, many = (Histogram(name, "h", buckets=[0.001, 0.005, 0.025, 1, 5], registry=CollectorRegistry())
                 for name in ("one", "many"))  # fmt: skip
    for value in values:
        one.observe(value)
    observe_all(many, values)
    observe_all(many, np.zeros(0))
    assert {(n.replace("one", "many"), le): v for (n, le), v in samples(one).items()} == samples(many)
