"""Compile Triton kernels for NVIDIA targets without a GPU and read what their PTX does.

- ``compile_asm(kernel, signature, constexprs, target)``: the PTX and cubin of one
  specialization, built by ``triton.compile`` from an ``ASTSource`` (ptxas included); the
  arguments named in ``aligned`` get the 16-byte divisibility specialization
  (``tt.divisibility=16``) that Triton's JIT gives at run time to pointers and to integers that
  are multiples of 16.
- ``ptx_stats(ptx)``: the widest global load and store (bits), whether the PTX declares or
  touches local memory (``.local``: local arrays), and the tensor-core instruction its dots use
  (``dot``: "wgmma", "mma" or "" for none).
- ``cubin_resources(cubin)``: registers, stack and local-memory bytes per thread after ptxas's
  register allocation (``cuobjdump --dump-resource-usage``): register spills show up here.
- ``Spec`` names one specialization by import path, so that ``compile_specs`` can build many in a
  fresh interpreter (``TRITON_INTERPRET`` unset: kernels imported under it are interpreted
  functions that cannot be compiled) with a process pool and a new, empty Triton cache.

Run as a script, this file is that fresh interpreter: ``compile_targets.py specs.json out.json``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGETS = (80, 90)  # sm_80 (A100) and sm_90 (H100), warp size 32
_ROOT = Path(__file__).resolve().parents[2]  # the repository root: fdiv is imported from here
_ACCESS = re.compile(r"\b(ld|st)\.global((?:\.[\w:]+)+)")


def _divisibility_attrs(kernel: Any, aligned: tuple[str, ...]) -> dict[tuple[int, ...], Any]:
    """ASTSource ``attrs`` marking ``aligned`` arguments divisible by 16 (Triton >= 3.3 form:
    {(argument index,): [["tt.divisibility", 16]]}, spelled by the backend's ``parse_attr``)."""
    from triton.backends.compiler import BaseBackend

    if not hasattr(BaseBackend, "parse_attr"):
        raise RuntimeError("this Triton predates ASTSource attrs as a dict (needs >= 3.3)")
    return {(kernel.arg_names.index(name),): BaseBackend.parse_attr("D") for name in aligned}


def compile_asm(
    kernel: Any,
    signature: dict[str, str],
    constexprs: dict[str, Any],
    target: int,
    *,
    aligned: tuple[str, ...] = (),
    num_warps: int = 4,
    maxnreg: int | None = None,
) -> tuple[str, bytes]:
    """(PTX, cubin) of ``kernel`` (a compiled-mode ``triton.jit`` function) for sm_``target``.

    ``signature`` maps every argument to a Triton type (``"*fp32"``, ``"i32"``, ``"fp32"``);
    constexpr arguments are given in ``constexprs`` (and typed ``"constexpr"`` automatically).
    ``maxnreg`` caps the registers per thread (ptx ``.maxnreg``; None: ptxas decides).
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    full = {name: signature.get(name, "constexpr") for name in kernel.arg_names}
    missing = [n for n, t in full.items() if t == "constexpr" and n not in constexprs]
    if missing:
        raise ValueError(f"{kernel.__name__}: no type or constexpr value for {missing}")
    source = ASTSource(kernel, full, constexprs, _divisibility_attrs(kernel, aligned))
    options = (
        {"num_warps": num_warps}
        if maxnreg is None
        else {"num_warps": num_warps, "maxnreg": maxnreg}
    )
    compiled = triton.compile(source, target=GPUTarget("cuda", target, 32), options=options)
    return compiled.asm["ptx"], compiled.asm["cubin"]


def ptx_stats(ptx: str) -> dict[str, Any]:
    """Widest global load / store in bits (0: none) and local-memory use of a PTX module."""
    widest = {"ld": 0, "st": 0}
    for op, suffix in _ACCESS.findall(ptx):
        parts = suffix.split(".")
        lanes = next((int(p[1:]) for p in parts if re.fullmatch(r"v\d", p)), 1)
        bits = next((int(p[1:]) for p in reversed(parts) if re.fullmatch(r"[bfsu]\d+", p)), 0)
        widest[op] = max(widest[op], lanes * bits)
    local = bool(re.search(r"\.local\b", ptx))
    dot = "wgmma" if "wgmma.mma_async" in ptx else "mma" if "mma.sync" in ptx else ""
    return {"load_bits": widest["ld"], "store_bits": widest["st"], "ptx_local": local, "dot": dot}


def _cuobjdump() -> str:
    try:
        from triton import knobs

        return knobs.nvidia.cuobjdump.path
    except (ImportError, AttributeError):  # Triton before knobs: the bundled binary
        import triton

        return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")


def cubin_resources(cubin: bytes) -> dict[str, int]:
    """Registers, stack and local bytes per thread of the (one-function) cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run(
            [_cuobjdump(), "--dump-resource-usage", f.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    found = dict(re.findall(r"\b(REG|STACK|LOCAL):(\d+)", usage))
    if set(found) != {"REG", "STACK", "LOCAL"}:
        raise RuntimeError(f"unexpected cuobjdump resource usage:\n{usage}")
    return {
        "registers": int(found["REG"]),
        "stack": int(found["STACK"]),
        "local": int(found["LOCAL"]),
    }


@dataclass(frozen=True)
class Spec:
    """One kernel specialization: ``kernel`` is "module:function" of a ``triton.jit`` function."""

    label: str
    kernel: str
    signature: dict[str, str]
    constexprs: dict[str, Any]
    target: int
    aligned: tuple[str, ...] = ()
    num_warps: int = 4
    maxnreg: int | None = None
    tags: dict[str, Any] = field(default_factory=dict)  # for the caller: what to expect


def _resolve(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _build(spec: Spec) -> dict[str, Any]:
    try:
        kernel = _resolve(spec.kernel)
        ptx, cubin = compile_asm(
            kernel,
            spec.signature,
            spec.constexprs,
            spec.target,
            aligned=spec.aligned,
            num_warps=spec.num_warps,
            maxnreg=spec.maxnreg,
        )
        return {"label": spec.label, **ptx_stats(ptx), **cubin_resources(cubin)}
    except Exception as err:  # reported per specialization, with its label
        return {"label": spec.label, "error": f"{type(err).__name__}: {err}"}


def compile_specs(specs: list[Spec], workdir: Path, processes: int = 2) -> dict[str, dict]:
    """Compile ``specs`` in a fresh interpreter without TRITON_INTERPRET, ``processes`` at a
    time, with an empty Triton cache under ``workdir``; returns {label: ptx_stats or error}."""
    spec_file, out_file = workdir / "specs.json", workdir / "results.json"
    spec_file.write_text(json.dumps([dataclasses.asdict(s) for s in specs]))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = tempfile.mkdtemp(dir=workdir, prefix="triton-cache-")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(_ROOT), env.get("PYTHONPATH"))))
    env["FDIV_COMPILE_PROCESSES"] = str(processes)
    run = subprocess.run(
        [sys.executable, __file__, str(spec_file), str(out_file)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"compiling failed (exit {run.returncode}):\n{run.stderr[-4000:]}")
    return {r["label"]: r for r in json.loads(out_file.read_text())}


def _main(spec_file: str, out_file: str) -> None:
    if os.environ.get("TRITON_INTERPRET"):
        raise SystemExit("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    loaded = json.loads(Path(spec_file).read_text())
    specs = [Spec(**{**s, "aligned": tuple(s["aligned"])}) for s in loaded]
    for module in {s.kernel.split(":")[0] for s in specs}:
        importlib.import_module(module)  # once here; the forked workers inherit it
    processes = int(os.environ.get("FDIV_COMPILE_PROCESSES", "2"))
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(_build, specs))
    Path(out_file).write_text(json.dumps(results))


if __name__ == "__main__":
    _main(*sys.argv[1:])
