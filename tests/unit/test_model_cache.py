"""Tests for signals.model_cache: one load per key per process."""

from __future__ import annotations

import threading
import time

import pytest

from signals import model_cache

pytestmark = pytest.mark.usefixtures("empty_model_cache")


class Loader:
    """A load function that counts its calls and returns a new object each time (after `seconds`)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.calls = 0
        self.seconds = seconds

    def __call__(self) -> object:
        self.calls += 1
        time.sleep(self.seconds)
        return object()


def test_loads_once_per_key() -> None:
    load = Loader()
    first = model_cache.get_or_load(("model", "cpu"), load)
    again = [model_cache.get_or_load(("model", "cpu"), load) for _ in range(5)]
    assert load.calls == 1
    assert all(m is first for m in again)
    assert model_cache.load_count(("model", "cpu")) == 1


def test_each_key_loads_its_own_model() -> None:
    load = Loader()
    keys = [("a", "cpu"), ("a", "cuda:0"), ("b", "cpu")]
    models = [model_cache.get_or_load(k, load) for k in keys]
    assert load.calls == 3
    assert len({id(m) for m in models}) == 3
    assert [model_cache.load_count(k) for k in keys] == [1, 1, 1]
    assert model_cache.get_or_load(("a", "cpu"), load) is models[0]


def test_load_count_of_an_unknown_key_is_zero() -> None:
    assert model_cache.load_count(("never", "loaded")) == 0


def test_clear_drops_models_so_the_next_use_loads_again() -> None:
    load = Loader()
    first = model_cache.get_or_load("k", load)
    model_cache.clear()
    second = model_cache.get_or_load("k", load)
    assert load.calls == 2
    assert second is not first
    # load_count counts loads in this process, so it shows the reload
    assert model_cache.load_count("k") == 2


def test_a_failed_load_is_not_cached() -> None:
    def broken():
        raise OSError("weights not found")

    with pytest.raises(OSError, match="weights not found"):
        model_cache.get_or_load("k", broken)
    assert model_cache.load_count("k") == 0
    load = Loader()
    model = model_cache.get_or_load("k", load)
    assert load.calls == 1 and model_cache.get_or_load("k", load) is model


def test_concurrent_first_use_loads_once() -> None:
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    load = Loader(seconds=0.2)  # as slow as reading weights: every thread arrives while the first loads
    results: list[object] = []
    lock = threading.Lock()

    def use() -> None:
        barrier.wait()
        model = model_cache.get_or_load("shared", load)
        with lock:
            results.append(model)

    threads = [threading.Thread(target=use) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == threads_n
    assert load.calls == 1
    assert all(m is results[0] for m in results)
