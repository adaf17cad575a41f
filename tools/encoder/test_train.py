"""Tests of the training loop's helpers: the weight average (--ema-decay) and the checkpoint.

Run: .venv/bin/python -m pytest tools/encoder/test_train.py -q
(Tiny pytrees; no data files needed.)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pytest

import jax.numpy as jnp

import train as T


def test_ema_warms_up_then_averages_with_the_given_decay():
    ema = {"w": jnp.zeros(3), "b": jnp.ones(())}
    params = {"w": jnp.full(3, 2.0), "b": jnp.zeros(())}
    # step 0: decay min(0.99, 1/10) = 0.1, so the average moves 90% of the way at once
    out = T.ema_update(ema, params, jnp.float32(0), 0.99)
    np.testing.assert_allclose(np.asarray(out["w"]), 0.9 * 2.0, rtol=1e-6)
    np.testing.assert_allclose(float(out["b"]), 0.1, rtol=1e-6)
    # late steps: the decay is the one given
    out = T.ema_update(ema, params, jnp.float32(1e6), 0.99)
    np.testing.assert_allclose(np.asarray(out["w"]), 0.01 * 2.0, rtol=1e-4)
    np.testing.assert_allclose(float(out["b"]), 0.99, rtol=1e-6)


def test_ema_of_constant_weights_is_those_weights():
    p = {"w": jnp.arange(4.0)}
    ema = dict(p)
    for step in range(50):
        ema = T.ema_update(ema, p, jnp.float32(step), 0.998)
    np.testing.assert_allclose(np.asarray(ema["w"]), np.arange(4.0), rtol=1e-6)


def test_checkpoint_round_trips_and_refuses_another_shape(tmp_path):
    state = ({"w": jnp.arange(6.0).reshape(2, 3)}, (jnp.ones(2), jnp.zeros(())))
    path = tmp_path / "ckpt.npz"
    T.save_ckpt(path, state, {"epoch": 3})
    back, meta = T.load_ckpt(path, state)
    assert meta == {"epoch": 3}
    np.testing.assert_array_equal(np.asarray(back[0]["w"]), np.asarray(state[0]["w"]))
    np.testing.assert_array_equal(np.asarray(back[1][0]), np.ones(2))
    # a run with the weight average holds one more copy of the parameters: a clear refusal
    with_ema = state + ({"w": jnp.zeros((2, 3))},)
    with pytest.raises(SystemExit, match="holds 3 arrays, this configuration expects 4"):
        T.load_ckpt(path, with_ema)


@pytest.mark.parametrize("argv, why", [
    (["--ema-decay", "1.5"], "--ema-decay 1.5: must be in"),
    (["--val-raw-weights"], "--val-raw-weights needs --ema-decay"),
])
def test_flags_that_cannot_work_are_refused_before_any_data_is_read(argv, why, capsys):
    with pytest.raises(SystemExit) as e:
        T.main(argv + ["--data-dir", "/nonexistent"])
    assert e.value.code == 2
    assert why in capsys.readouterr().err
