"""The serving load test's machinery on tiny settings: the items it sends, the clients' load
against a service in this process (two cheap signals), and the summary it reports."""
from __future__ import annotations

import json
import shutil
from urllib.parse import urlsplit

import numpy as np
import pytest

from benchmarks.serving import good_items, latency_summary, load, serving_line
from conf.settings import load_settings
from serving.app import create_app
from serving.connections import ClosedConnections
from serving.reload import Champions
from serving.server import running
from tests.unit.test_serving_requests import SIGNALS, health


def test_the_summary_is_numpys_percentiles_of_the_answered_requests() -> None:
    latencies = list(np.random.default_rng(0).exponential(0.1, 250))
    summary = latency_summary(latencies, 5.0, unanswered=3)
    assert summary["p50_ms"] == pytest.approx(1000 * np.percentile(latencies, 50), abs=0.05)
    assert summary["p99_ms"] == pytest.approx(1000 * np.percentile(latencies, 99), abs=0.05)
    assert (summary["requests"], summary["unanswered"], summary["requests_per_s"]) == (250, 3, 50.0)


def test_the_load_sends_the_bounded_requests_and_counts_what_the_service_scored(tmp_path, empty_registry_db) -> None:
    shutil.copytree(empty_registry_db.parent, tmp_path / "_registry")
    enabled = load_settings("local").enabled_signals
    settings = load_settings("local", [f"lakehouse={tmp_path}", *(f"signals.{n}.enabled={'true' if n in SIGNALS else 'false'}" for n in enabled)])
    bodies = good_items(3, seed=7)
    assert len(bodies) == 3 and all(json.loads(b)["image"] and json.loads(b)["title"] for b in bodies)
    with running(create_app(Champions(settings), settings.serve, ClosedConnections())) as url:
        where = urlsplit(url)
        before = health(where)
        result = load(where.port, bodies, clients=2, requests=7, duration_s=60)
        after = health(where)
    assert result["requests"] + result["unanswered"] == 7 == after["items"] - before["items"]
    assert result["requests"] == 7 and result["p50_ms"] <= result["p99_ms"]
    wall = result["wall_s"]  # rounded to 0.01 s: the rate, from the unrounded wall, lies within what that rounding allows
    assert 7 / (wall + 0.005) - 0.01 <= result["requests_per_s"] <= 7 / max(wall - 0.005, 1e-3) + 0.01
    line = serving_line({"levels": {"2": {"micro_batching": result, "one_per_forward": result}}})
    assert line.startswith("serving") and f"{result['p50_ms']}/{result['p99_ms']} ms" in line


def test_the_line_shows_micro_batching_first_whichever_service_ran_first():
    """The services swap places from one level to the next; the line showed them in the order they ran, so at 8 clients
    it put one item per pass's figures under "micro-batching"."""
    def figures(p99: float) -> dict[str, float]:
        return {"p50_ms": 1.0, "p99_ms": p99, "requests_per_s": 2.0}

    line = serving_line({"levels": {"8": {"one_per_forward": figures(200.0), "micro_batching": figures(100.0)}}})
    assert line == "serving (micro-batching vs one per pass; p50/p99): 8 clients 1.0/100.0 ms, 2.0/s vs 1.0/200.0 ms, 2.0/s"
