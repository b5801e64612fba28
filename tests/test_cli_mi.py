"""``fdiv mi``: paired sample files in, the estimate (or KSG) out, JSON; one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fdiv.cli import main

RHO = 0.8  # I = -1/2 log(1 - 0.64) = 0.511 nats
TRUTH = -0.5 * math.log(1 - RHO**2)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(2000, 1))
Y = RHO * X + math.sqrt(1 - RHO**2) * RNG.normal(size=(2000, 1))


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["mi", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_mi_prints_and_writes_json(tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "x.npy", X)
    np.savetxt(tmp_path / "y.csv", Y, delimiter=",")
    out_json = tmp_path / "mi.json"
    argv = (str(tmp_path / "x.npy"), str(tmp_path / "y.csv"), "--steps", "200", "--seed", "1")
    code, out, _ = run(capsys, *argv, "--json", str(out_json))
    assert code == 0
    assert out.startswith("mi (infonce): ")
    result = json.loads(out_json.read_text())
    assert result["method"] == "mutual_information/separable" and result["bound"] == "infonce"
    # measured 0.498 (stderr 0.038; InfoNCE is a lower bound): within 0.1 nats of the truth
    assert abs(result["value"] - TRUTH) < 0.1
    assert result["n_test"] == [400, 400] and isinstance(result["warnings"], list)
    code, out, _ = run(capsys, *argv, "--bound", "js")
    assert code == 0 and out.startswith("js-mi (js): ")


def test_mi_ksg(tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    out_json = tmp_path / "ksg.json"
    code, out, _ = run(
        capsys, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--bound", "ksg",
        "--json", str(out_json),
    )  # fmt: skip
    assert code == 0 and "KSG, k=3" in out
    assert json.loads(out_json.read_text())["value"] == pytest.approx(TRUTH, abs=0.05)


@pytest.mark.parametrize(
    ("y", "extra", "message"),
    [
        (Y[:1999], (), "X and Y must have the same number of rows, got 2000 and 1999"),
        (Y, ("--bound", "jsd-mi"), "bound 'jsd-mi' is unknown"),
        (Y, ("--bound", "infonce", "--critic", "joint"), "needs all pairs"),
        (Y, ("--steps", "0"), "steps must be positive"),
        (np.full_like(Y, np.nan), (), "non-finite"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    tmp_path: Path, capsys, y: np.ndarray, extra: tuple[str, ...], message: str
) -> None:
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    code, out, err = run(capsys, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), *extra)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("fdiv: error: ") and message in err


def test_missing_file_and_missing_argument(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope.npy"), str(tmp_path / "nope.npy"))
    assert code == 2 and err.count("\n") == 1
    code, _, err = run(capsys, str(tmp_path / "x.npy"))
    assert code == 2 and err.count("\n") == 1 and "required" in err


def test_discrete_pairs_are_counted(tmp_path: Path, capsys) -> None:
    """Labels: y = x + {0, 1} mod 5, I = log 5 - log 2; the tables' jackknifed plug-in."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 5, 3000)
    np.save(tmp_path / "x.npy", x.astype(float))
    np.save(tmp_path / "y.npy", ((x + rng.integers(0, 2, 3000)) % 5).astype(float))
    code, out, err = run(capsys, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"))
    assert code == 0 and err == ""
    assert out.startswith("mi (plug-in (jackknife)): ")
    assert "method: counts (discrete pairs" in out and "(3000 pairs, no training;" in out
