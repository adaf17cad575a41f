"""Shared by the package's tests."""

import threading

import pytest


@pytest.fixture
def ticks_during():
    """`ticks_during(call)`: runs `call()` while another Python thread counts as fast as it
    can; returns how far it counted. With the GIL held for the whole call it cannot count
    at all."""

    def run(call):
        ticks = 0
        done = threading.Event()

        def tick():
            nonlocal ticks
            while not done.is_set():
                ticks += 1

        t = threading.Thread(target=tick)
        t.start()
        try:
            before = ticks
            call()
            return ticks - before
        finally:
            done.set()
            t.join()

    return run
