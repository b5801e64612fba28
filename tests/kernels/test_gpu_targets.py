"""Every Triton kernel of fdiv compiles for sm_80 and sm_90 (no GPU needed) to the PTX we want.

How: ``compile_targets.compile_asm(kernel, signature, constexprs, target, aligned=...)`` builds
one specialization (PTX and cubin) with ``triton.compile`` and a ``GPUTarget``; ``ptx_stats``
reads the PTX's widest global load/store and any ``.local``, ``cubin_resources`` the registers
and the stack/local bytes after ptxas's register allocation (where spills appear). All the
specializations below are built in one fresh process (TRITON_INTERPRET unset, empty Triton
cache, two workers) by ``compile_targets.compile_specs``.

What: each kernel x every constexpr branch it has (divergence family, conjugate or not, clip, R1
or WGAN-GP) x fp32 / fp16 / bf16 inputs x sm_80 / sm_90, with pointers and element counts given
the 16-byte divisibility the JIT gives at run time to torch tensors and to lengths that are
multiples of 16. Checked: nothing spills to local memory (no ``.local`` in the PTX, zero
stack and local bytes in the cubin), and the elementwise stages load (and,
where they write gradients, store) 128 bits per instruction (``ld.global.v4.b32``). Control: the
same loss kernel without those specializations loads 32 bits at a time (a length that is not a
multiple of 16 alone makes the masked accesses scalar: the price of odd batch sizes); capped at
24 registers per thread (ptxas's floor) it spills, so the spill check does see spills.

To add a kernel: write a ``_specs`` loop like the ones below (signature, constexprs, aligned
arguments, the elementwise tags) and add it to ``SPECS``.
"""

from __future__ import annotations

import dataclasses
from itertools import product
from pathlib import Path

import pytest
from compile_targets import TARGETS, Spec, compile_specs

from fdiv.kernels.common import DEFAULT_BLOCK, RBLOCK, num_warps
from fdiv.kernels.fdiv_loss import FAMILIES

DTYPES = ("fp32", "fp16", "bf16")
WARPS = num_warps(DEFAULT_BLOCK)
# tags: the widest global load / store (bits) a stage must reach
VECTOR = {"load_bits": 128, "store_bits": 128}
SCALAR = {"load_bits": 32, "store_bits": 32}


def _loss_specs() -> list[Spec]:
    specs = []
    for (family, code), conj, dtype, target in product(
        FAMILIES.items(), (True, False), DTYPES, TARGETS
    ):
        signature = {name: f"*{dtype}" for name in ("vp_ptr", "vq_ptr", "gp_ptr", "gq_ptr")}
        signature.update(part_ptr="*fp32", n_p="i32", n_q="i32", n_prog_p="i32")
        signature.update(grad_scale_p="fp32", grad_scale_q="fp32", alpha="fp32")
        specs.append(
            Spec(
                f"fdiv_loss._loss_kernel[{family},{'conj' if conj else 'g'},{dtype},sm_{target}]",
                "fdiv.kernels.fdiv_loss:_loss_kernel",
                signature,
                {"FAMILY": code, "Q_CONJ": conj, "BLOCK": DEFAULT_BLOCK},
                target,
                aligned=(*(n for n, t in signature.items() if t.startswith("*")), "n_p", "n_q"),
                num_warps=WARPS,
                tags=VECTOR,
            )
        )
    return specs


def _reduction_specs() -> list[Spec]:
    """The one-program stages over the per-program partials (fp32 whatever the input dtype)."""
    finalize = {"part_ptr": "*fp32", "out_ptr": "*fp32", "n_prog_p": "i32", "n_prog_q": "i32"}
    finalize.update(scale_p="fp32", scale_q="fp32")
    merge = {"max_ptr": "*fp32", "sum_ptr": "*fp32", "out_ptr": "*fp32", "n_prog": "i32"}
    merge.update(log_n="fp32")
    kernels = (
        ("fdiv_loss._finalize_kernel", "fdiv.kernels.fdiv_loss:_finalize_kernel", finalize),
        ("logmeanexp._merge_kernel", "fdiv.kernels.logmeanexp:_merge_kernel", merge),
    )
    return [
        Spec(
            f"{label}[fp32,sm_{target}]",
            path,
            signature,
            {"RBLOCK": RBLOCK},
            target,
            aligned=tuple(n for n, t in signature.items() if t.startswith("*")),
        )
        for (label, path, signature), target in product(kernels, TARGETS)
    ]


def _logmeanexp_specs() -> list[Spec]:
    specs = []
    for clip, dtype, target in product((True, False), DTYPES, TARGETS):
        tag = f"{'smile' if clip else 'dv'},{dtype},sm_{target}"
        partials = {"v_ptr": f"*{dtype}", "max_ptr": "*fp32", "sum_ptr": "*fp32", "n": "i32"}
        partials.update(clip="fp32")
        weights = {"v_ptr": f"*{dtype}", "grad_ptr": f"*{dtype}", "out_ptr": "*fp32", "n": "i32"}
        weights.update(clip="fp32", grad_scale="fp32")
        for name, signature, tags in (
            ("_partials_kernel", partials, {"load_bits": 128}),  # one partial stored per program
            ("_weights_kernel", weights, VECTOR),
        ):
            specs.append(
                Spec(
                    f"logmeanexp.{name}[{tag}]",
                    f"fdiv.kernels.logmeanexp:{name}",
                    signature,
                    {"CLIP": clip, "BLOCK": DEFAULT_BLOCK},
                    target,
                    aligned=(*(n for n, t in signature.items() if t.startswith("*")), "n"),
                    num_warps=WARPS,
                    tags=tags,
                )
            )
    return specs


def _penalty_specs() -> list[Spec]:
    """Rows of D = 256 values (8 rows per program) and of D = 3072 (a 3x32x32 image)."""
    specs = []
    for r1, dtype, target, (rows, block_d) in product(
        (True, False), DTYPES, TARGETS, ((8, 256), (1, DEFAULT_BLOCK))
    ):
        signature = {"g_ptr": f"*{dtype}", "d_ptr": f"*{dtype}", "part_ptr": "*fp32"}
        signature.update(n_rows="i32", n_cols="i32", grad_scale="fp32")
        kind = "r1" if r1 else "wgan-gp"
        specs.append(
            Spec(
                f"grad_penalty._penalty_kernel[{kind},{rows}x{block_d},{dtype},sm_{target}]",
                "fdiv.kernels.grad_penalty:_penalty_kernel",
                signature,
                {"R1": r1, "ROWS": rows, "BLOCK_D": block_d},
                target,
                aligned=("g_ptr", "d_ptr", "part_ptr", "n_cols"),
                num_warps=num_warps(rows * block_d),
                tags=VECTOR,
            )
        )
    return specs


def _all_pairs_specs() -> list[Spec]:
    """The all-pairs bound kernels at k = 64 (tiles 64 x 64): forward and both gradient kernels
    for infonce, smile (the log-sum-exp kinds, dv is smile without the clip) and nwj (an
    f-divergence). Half inputs must reach the tensor cores (mma on sm_80, wgmma on sm_90);
    fp32 inputs use IEEE products (no tensor cores). The gradient dots take W in fp32 with TF32
    products for half inputs, so they use the tensor cores too. Launched as the kernels are:
    8 warps, and fp32 steps of 16 along k and the gradient's columns (wider ones spill)."""
    kinds = {"infonce": (0, 0, False), "smile": (1, 0, True), "nwj": (2, FAMILIES["kl"], False)}
    grad_kinds = ("infonce", "smile")
    specs = []
    for (bound, (kind, family, clip)), dtype, target in product(kinds.items(), DTYPES, TARGETS):
        half = dtype != "fp32"
        width = 64 if half else 16  # all_pairs_triton._max_block_k
        const = {"KIND": kind, "FAMILY": family, "CLIP": clip, "BLOCK": 64, "BLOCK_K": width}
        const["PRECISION"] = "tf32" if half else "ieee"
        dot = {"dot": ("wgmma" if target >= 90 else "mma") if half else ""}
        forward = {"f_ptr": f"*{dtype}", "g_ptr": f"*{dtype}", "diag_ptr": "*fp32"}
        forward.update(part_ptr="*fp32", n="i32", k="i32", n_split="i32", clip="fp32")
        forward.update(alpha="fp32")
        grad = {"f_ptr": f"*{dtype}", "g_ptr": f"*{dtype}", "stat_ptr": "*fp32"}
        grad.update(go_ptr="*fp32", out_ptr=f"*{dtype}", n="i32", k="i32", clip="fp32")
        grad.update(alpha="fp32", inv_n="fp32", inv_pairs="fp32")
        tag = f"{bound},{dtype},sm_{target}"
        variants = [("_forward_kernel", tag, forward, const)] + [
            ("_grad_kernel", f"{tag},{'g' if wrt_g else 'f'}", grad,
             {**const, "WRT_G": wrt_g, "BLOCK_D": width})
            for wrt_g in (False, True)
            if bound in grad_kinds
        ]  # fmt: skip
        for name, label, signature, constexprs in variants:
            specs.append(
                Spec(
                    f"all_pairs_triton.{name}[{label}]",
                    f"fdiv.kernels.all_pairs_triton:{name}",
                    signature,
                    constexprs,
                    target,
                    aligned=(*(n for n, t in signature.items() if t.startswith("*")), "k"),
                    num_warps=8,
                    tags=dot,
                )
            )
    return specs


def _control_specs() -> list[Spec]:
    """The js loss kernel, fp32, sm_90: nothing specialized; pointers only (odd lengths); and
    tv (measured: 48 stack bytes when capped) capped at 24 registers per thread (ptxas's floor)."""
    loss = {s.label: s for s in _loss_specs()}
    js = loss["fdiv_loss._loss_kernel[js,conj,fp32,sm_90]"]
    pointers = tuple(n for n in js.aligned if n.endswith("_ptr"))
    capped = loss["fdiv_loss._loss_kernel[tv,conj,fp32,sm_90]"]
    return [
        dataclasses.replace(js, label=f"control:unaligned:{js.label}", aligned=(), tags=SCALAR),
        dataclasses.replace(
            js, label=f"control:odd-length:{js.label}", aligned=pointers, tags=SCALAR
        ),
        dataclasses.replace(
            capped, label=f"control:maxnreg=24:{capped.label}", maxnreg=24, tags={}
        ),
    ]


SPECS = [
    *_loss_specs(),
    *_reduction_specs(),
    *_logmeanexp_specs(),
    *_penalty_specs(),
    *_all_pairs_specs(),
    *_control_specs(),
]
CHECKED = [s for s in SPECS if not s.label.startswith("control:")]
ALL_PAIRS = [s for s in SPECS if s.label.startswith("all_pairs_triton.")]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    results = compile_specs(SPECS, Path(tmp_path_factory.mktemp("gpu-targets")))
    print(_summary(results))
    return results


def _summary(results: dict[str, dict]) -> str:
    """Per kernel: specializations built, targets, dtypes, widest load/store seen, spills."""
    rows: dict[str, list[dict]] = {}
    for spec in CHECKED:
        rows.setdefault(spec.label.split("[")[0], []).append({**results[spec.label], "spec": spec})
    lines = ["kernel | built | widest ld / st (bits) | registers | with local memory or stack"]
    for kernel, entries in rows.items():
        ok = [e for e in entries if "error" not in e]
        lds = sorted({e["load_bits"] for e in ok})
        sts = sorted({e["store_bits"] for e in ok})
        regs = [e["registers"] for e in ok]
        spills = sum(e["ptx_local"] or e["stack"] > 0 or e["local"] > 0 for e in ok)
        lines.append(
            f"{kernel} | {len(ok)}/{len(entries)} | {lds} / {sts} | "
            f"{min(regs, default=0)}-{max(regs, default=0)} | {spills}"
        )
    for spec in SPECS[len(CHECKED) :]:
        r = results[spec.label]
        lines.append(
            f"{spec.label} | widest ld / st {r.get('load_bits')} / {r.get('store_bits')} | "
            f"registers {r.get('registers')} | stack {r.get('stack')} | local {r.get('local')}"
        )
    return "\n".join(lines)


@pytest.mark.parametrize("spec", CHECKED, ids=lambda s: s.label)
def test_compiles_without_local_memory(spec: Spec, compiled: dict[str, dict]) -> None:
    result = compiled[spec.label]
    assert "error" not in result, result.get("error")
    assert not result["ptx_local"], f"{spec.label}: the PTX uses local memory"
    assert result["stack"] == result["local"] == 0, f"{spec.label} spills: {result}"


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.tags and s not in ALL_PAIRS], ids=lambda s: s.label
)
def test_vector_width(spec: Spec, compiled: dict[str, dict]) -> None:
    """128-bit accesses in the elementwise stages; 32-bit ones in the unspecialized controls."""
    result = compiled[spec.label]
    assert "error" not in result, result.get("error")
    assert {k: result[k] for k in spec.tags} == spec.tags


def test_capped_registers_spill(compiled: dict[str, dict]) -> None:
    """The spill check sees spills: 24 registers per thread are too few for tv."""
    (label,) = (s.label for s in SPECS if s.maxnreg is not None)
    result = compiled[label]
    assert "error" not in result, result.get("error")
    assert result["registers"] <= 24 and result["stack"] + result["local"] > 0, result


@pytest.mark.parametrize("spec", [s for s in ALL_PAIRS if s.tags], ids=lambda s: s.label)
def test_all_pairs_dots_use_tensor_cores_for_half_inputs(
    spec: Spec, compiled: dict[str, dict]
) -> None:
    result = compiled[spec.label]
    assert "error" not in result, result.get("error")
    assert result["dot"] == spec.tags["dot"], result
