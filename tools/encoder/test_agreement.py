"""The committed encoders keep their prefix agreement (pytest; fixture and its rules:
agreement_fixture.py).

    .venv/bin/python -m pytest tools/encoder/test_agreement.py -q
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest

import agreement_fixture as A

pytestmark = pytest.mark.skipif(not A.FIXTURE.exists(), reason="no prefix-agreement fixture")


@pytest.fixture(scope="module")
def fixture_and_shares():
    fx = json.loads(A.FIXTURE.read_text())
    return fx, A.shares(fx["histories"])


def test_fixture_is_the_documented_user_set():
    fx = json.loads(A.FIXTURE.read_text())
    assert len(fx["histories"]) == A.USERS
    assert all(1 <= len(h) <= 50 and min(h) >= 1 for h in fx["histories"])
    shared = A.D.resolve("../shared/datasets")
    if shared.exists():
        assert fx["histories"] == A.fixture_histories(shared)


def test_every_prefix_reaches_its_floor(fixture_and_shares):
    fx, got = fixture_and_shares
    low = [(w, d, got[w][d], f) for w, row in fx["floor"].items() for d, f in row.items() if got[w][d] < f]
    assert not low, f"prefix agreement below its floor (width, depth, share, floor): {low}"


def test_recorded_shares_are_the_committed_files(fixture_and_shares):
    """A re-export without regenerating the fixture is caught here, not at the next model."""
    fx, got = fixture_and_shares
    for w, row in fx["share"].items():
        for d, v in row.items():
            assert abs(got[w][d] - v) <= 0.002, (w, d, got[w][d], v)

