"""``fdiv estimate``: file formats, output, the JSON result, and one-line errors with status 2."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fdiv.cli import main
from fdiv.io import load_samples

RNG = np.random.default_rng(0)
P = RNG.normal(size=(400, 2))
Q = RNG.normal(size=(300, 2)) * 1.3 + 0.5


def save(path: Path, array: object) -> str:
    """Write ``array`` in the format named by ``path``'s suffix; returns the path as a string."""
    if path.suffix == ".npy":
        np.save(path, array)
    elif path.suffix == ".npz":
        np.savez(path, samples=array)
    elif path.suffix == ".pt":
        torch.save(array, path)
    else:
        path.write_text(array if isinstance(array, str) else _csv(np.asarray(array)))
    return str(path)


def _csv(array: np.ndarray) -> str:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in np.atleast_2d(array))


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["estimate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv", ".pt"])
def test_every_format_loads_the_same_matrix(tmp_path: Path, suffix: str) -> None:
    array = torch.from_numpy(P) if suffix == ".pt" else P
    assert np.array_equal(load_samples(save(tmp_path / f"p{suffix}", array)), P)


def test_csv_with_header_and_1d_arrays(tmp_path: Path) -> None:
    text = "x,y\n" + _csv(P[:5])
    assert np.array_equal(load_samples(save(tmp_path / "h.csv", text)), P[:5])
    assert load_samples(save(tmp_path / "v.npy", P[:, 0])).shape == (400, 1)


def test_variational_estimate_prints_and_writes_json(tmp_path: Path, capsys) -> None:
    p, q = save(tmp_path / "p.npy", P), save(tmp_path / "q.csv", Q)
    out_json = tmp_path / "result.json"
    code, out, err = run(capsys, p, q, "--steps", "40", "--seed", "3", "--json", str(out_json))
    assert code == 0
    assert "kl (dv):" in out and "nats, 95% interval [" in out
    assert "method: variational (kl: cross-fitted variational DV; telescoping" in out
    result = json.loads(out_json.read_text())
    assert result["method"] == "variational" and result["bound"] == "dv"
    assert result["n_test"] == [400, 300] and result["steps"] == 40  # every row held out once
    assert result["folds"] == 3 and result["reason"] in out
    assert err == "".join(f"fdiv: warning: {w}\n" for w in result["warnings"])
    low, high = result["ci95"]
    assert low < result["value"] < high
    assert f"{result['value']:.4f}" in out
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place


def test_js_with_fdual(tmp_path: Path, capsys) -> None:
    p, q = save(tmp_path / "p.pt", torch.from_numpy(P)), save(tmp_path / "q.npz", Q)
    code, out, _ = run(capsys, p, q, "--divergence", "js", "--steps", "20")
    assert code == 0 and out.startswith("js (fdual):")


def test_knn_method(tmp_path: Path, capsys) -> None:
    p, q = save(tmp_path / "p.npy", P), save(tmp_path / "q.npy", Q)
    out_json = tmp_path / "knn.json"
    code, out, _ = run(capsys, p, q, "--method", "knn", "--k", "4", "--json", str(out_json))
    assert (
        code == 0 and "kl (knn(k=4)):" in out and "method: knn (method='knn' was requested)" in out
    )
    result = json.loads(out_json.read_text())
    assert result["method"] == "knn" and math.isfinite(result["value"])
    assert result["n_test"] == [400, 300]
    low, high = result["ci95"]
    assert low < result["value"] < high


def test_warnings_go_to_stderr_and_json(tmp_path: Path, capsys) -> None:
    far = save(tmp_path / "far.npy", P[:, :1] + 100.0)  # 1-D, 100 standard deviations apart
    p, out_json = save(tmp_path / "p.npy", P[:, :1]), tmp_path / "far.json"
    code, out, err = run(capsys, p, far, "--method", "knn", "--json", str(out_json))
    result = json.loads(out_json.read_text())
    assert code == 0 and "method: knn (method='knn' was requested)" in out
    assert "fdiv: warning: P and Q barely overlap" in err
    assert any("barely overlap" in w for w in result["warnings"])


def test_same_file_as_p_and_q_gives_an_interval_with_zero(tmp_path: Path, capsys) -> None:
    p, out_json = save(tmp_path / "p.npy", P), tmp_path / "same.json"
    code, _, _ = run(capsys, p, p, "--steps", "200", "--json", str(out_json))
    low, high = map(float, json.loads(out_json.read_text())["ci95"])  # "inf" where open
    assert code == 0 and low <= 0.0 <= high


def _nan_p() -> np.ndarray:
    bad = P.copy()
    bad[17, 1] = np.nan
    bad[30, 0] = np.inf
    return bad


BAD_CASES = [
    ({"p.npy": _nan_p()}, [], r"p\.npy has 2 non-finite values \(first at row 17, column 1\)"),
    ({"q.npy": Q[:, :1]}, [], "same dimension"),
    ({"p.npy": P[:60]}, [], "at least 20"),
    ({"p.csv": "a,b\n1,2\n3,x\n"}, [], r"row 1, column 1 is not a number: 'x'"),
    ({"p.npy": P.astype(object)}, [], "not a numeric .npy array"),
    ({"p.pt": {"x": torch.zeros(3)}}, [], "must hold one tensor, found dict"),
    ({}, ["--divergence", "jsdd"], "divergence 'jsdd' is unknown"),
    ({}, ["--divergence", "js", "--bound", "dv"], "'dv' applies only to kl"),
    ({}, ["--steps", "0"], "steps must be positive"),
    ({}, ["--steps", "ten"], "invalid int value"),
    ({}, ["--method", "knn", "--divergence", "js"], "knn estimates kl only"),
    ({"p.txt": "1\n"}, [], "unknown file type '.txt'"),
]


@pytest.mark.parametrize(("files", "extra", "message"), BAD_CASES)
def test_bad_input_is_one_line_and_status_2(tmp_path: Path, capsys, files, extra, message) -> None:
    paths = {"p": save(tmp_path / "p.npy", P), "q": save(tmp_path / "q.npy", Q)}
    for name, content in files.items():
        paths[name[0]] = save(tmp_path / name, content)
    code, out, err = run(capsys, paths["p"], paths["q"], "--steps", "5", *extra)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("fdiv")
    assert re.search(message, err), err


def test_npz_with_two_arrays_and_missing_file(tmp_path: Path, capsys) -> None:
    two = tmp_path / "two.npz"
    np.savez(two, a=P, b=Q)
    q = save(tmp_path / "q.npy", Q)
    for p, message in ((str(two), "exactly one array, found 2 (a, b)"), ("nope.npy", "no such")):
        code, _, err = run(capsys, p, q)
        assert code == 2 and err.count("\n") == 1 and message in err


def test_help_renders(capsys) -> None:
    for argv in (["--help"], ["estimate", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        assert "estimate" in capsys.readouterr().out


def test_same_one_dimensional_file_holds_zero(tmp_path: Path, capsys) -> None:
    """In 1-D too auto cross-fits the variational estimate (kNN's zero distances between
    repeated rows would make it certain of a wrong value); its splits keep equal rows together."""
    p, out_json = save(tmp_path / "p1.npy", P[:, :1]), tmp_path / "same1.json"
    code, _, _ = run(capsys, p, p, "--steps", "200", "--json", str(out_json))
    result = json.loads(out_json.read_text())
    low, high = result["ci95"]
    assert code == 0 and result["method"] == "variational"
    assert low <= 0.0 <= high


def test_discrete_samples_are_counted(tmp_path: Path, capsys) -> None:
    """Category labels: the frequency tables' jackknifed plug-in, said so, with no training."""
    rng = np.random.default_rng(1)
    p = save(tmp_path / "p.npy", rng.choice(4, 1000, p=[0.4, 0.3, 0.2, 0.1]).astype(float))
    q = save(tmp_path / "q.npy", rng.choice(4, 1000, p=[0.1, 0.2, 0.3, 0.4]).astype(float))
    code, out, err = run(capsys, p, q, "--divergence", "hellinger")
    assert code == 0 and err == ""
    assert "method: counts (discrete samples" in out
    assert "(1000 + 1000 samples, no training;" in out


def test_counts_on_continuous_samples_is_one_line(tmp_path: Path, capsys) -> None:
    p, q = save(tmp_path / "p.npy", P), save(tmp_path / "q.npy", Q)
    code, out, err = run(capsys, p, q, "--method", "counts")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "method 'counts' does not apply" in err and "do not resolve" in err
