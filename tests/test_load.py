"""The load test in its short form (10 s, 4 clients + one fine-tune) on tiny weights; the full one
(20 clients, 60 s, the shipped weights) is `python benchmarks/load.py` or `pytest -m load`.

The app runs as its own process on a free loopback port, exactly as `python app.py` runs.
"""

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import load  # noqa: E402


def check(report: dict, clients: int):
    problems = {name: e["first_errors"] for name, e in report["endpoints"].items() if e["errors"]}
    assert report["errors"] == 0, (problems, report["log_errors"][:5])
    assert report["app_alive"] and report["tracebacks_in_log"] == 0
    assert report["url"].startswith("http://127.0.0.1:")
    endpoints = report["endpoints"]
    assert endpoints["predict"]["requests"] > 0 and endpoints["predict_text"]["requests"] > 0
    assert endpoints["train_start"]["requests"] == 1 and "Held-out accuracy" in report["finetune"]["status"]
    # More visitors than the inference group's one seat: some were told their place in the queue.
    assert report["told_place_in_queue"] > 0 and report["deepest_place"] >= 1
    assert 0 < report["rss_mb"]["before"] <= report["rss_mb"]["peak"]
    assert report["clients"] == clients


def test_short_load_no_errors(tiny_weights):
    check(load.run(clients=4, seconds=10, weights=tiny_weights, quiet=True), clients=4)


@pytest.mark.load
def test_full_load_no_errors(tmp_path):
    check(load.run(clients=20, seconds=60, json_path=tmp_path / "load.json"), clients=20)
