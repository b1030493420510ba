"""Speed of the s3fn ops and models against PyTorch eager and torch.compile.

    python -m benchmarks.run [--quick] [--device cpu|cuda] [--out PATH]

Every case runs three variants of the same computation (eager PyTorch, torch.compile of the
eager code, s3fn) interleaved in one process, repeat by repeat, on rotating input buffers, and
reports the median time of each and the ratios against s3fn. CUDA times come from CUDA events
around each call. A table goes to stdout, and JSON (machine, versions, measured peak rates,
medians, all repeats) to benchmarks/results/<machine>.json (<machine>-quick.json with --quick,
which uses a smaller batch, fewer repeats and no torch.compile).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import s3fn.ops as ops
from benchmarks.plain_model import PlainS3FN

RESULTS = Path(__file__).parent / "results"
BANDS, WINDOW = 30, 32
# The paper's backbone: (c_in, c_out, pool) per 3x3x3 block, valid padding.
BLOCKS = [(1, 32, "avg"), (32, 64, None), (64, 128, "avg")]
COSINE_SHAPE = (256, 16, 1024)  # N, K, d
N_CLASSES, TEXT_DIM = 3, 1024

Step = Callable[[int], Any]  # runs one call on input buffer i

# The CPU speed targets (eager / s3fn in one run) of issues 7 and 14.
CPU_TARGETS = {
    "block1 fwd": 3.0,
    "backbone fwd": 1.5,
    "backbone fwd+bwd": 1.8,
    "cosine_alignment_loss fwd+bwd": 2.0,
    "S3FN train step": 1.7,
    "S3FN inference": 1.5,
}


@dataclass
class Case:
    """One comparison: the same step as eager, torch.compile and s3fn code."""

    name: str
    shape: str
    dtype: torch.dtype
    eager: Step
    s3fn: Step
    compiled: Step | None = None
    flops: float = 0.0  # per call, for the achieved rate
    min_bytes: float = 0.0  # per call: inputs read once, outputs written once
    windows: int = 0  # windows per call, for a throughput figure
    times: dict[str, list[float]] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(step: Step, i: int, device: torch.device, inner: int = 1) -> float:
    """Seconds per call of step(i), over `inner` back-to-back calls: CUDA events on a GPU, the
    wall clock on the CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            step(i)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / inner
    t0 = time.perf_counter()
    for _ in range(inner):
        step(i)
    return (time.perf_counter() - t0) / inner


def run_case(case: Case, device: torch.device, repeats: int, warmup: int, nbuf: int) -> None:
    """Times the variants of a case interleaved, `repeats` calls each after `warmup`."""
    variants = {"eager": case.eager, "s3fn": case.s3fn}
    if case.compiled is not None:
        variants["compile"] = case.compiled
    for step in variants.values():
        for i in range(warmup):
            step(i % nbuf)
    _sync(device)
    # Sub-millisecond steps are timed over enough calls to fill ~20 ms per sample.
    inner = max(1, min(100, int(0.02 / time_call(case.eager, 0, device))))
    case.times = {k: [] for k in variants}
    for r in range(repeats):
        for k, step in variants.items():
            case.times[k].append(time_call(step, r % nbuf, device, inner))


def median_ms(case: Case, variant: str) -> float | None:
    t = case.times.get(variant)
    return statistics.median(t) * 1e3 if t else None


# ---------------------------------------------------------------------------
# Machine


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU / GPU name, core count, library versions and thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "python": platform.python_version(),
        "device": device.type,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def machine_name(info: dict[str, Any]) -> str:
    """A file name for the results: device, processor and core count."""
    proc = info.get("gpu") or info["cpu"]
    slug = re.sub(r"[^a-z0-9]+", "-", proc.lower()).strip("-")
    return f"{info['device']}-{slug}-{info['cores']}c"


def measure_peaks(device: torch.device, dtype: torch.dtype, repeats: int) -> dict[str, float]:
    """The matmul rate (FLOP/s, square matmul) and copy bandwidth (bytes/s, read + write)."""
    n = 4096 if device.type == "cuda" else 1536
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    src = torch.empty(64 << 20, device=device, dtype=torch.uint8).fill_(1)
    dst = torch.empty_like(src)
    mm = [time_call(lambda _: torch.mm(a, b), 0, device) for _ in range(repeats + 2)][2:]
    cp = [time_call(lambda _: dst.copy_(src), 0, device) for _ in range(repeats + 2)][2:]
    return {
        "matmul_flops": 2 * n**3 / min(mm),
        "copy_bytes_per_s": 2 * src.numel() / min(cp),
    }


# ---------------------------------------------------------------------------
# Cases


def _rand(nbuf: int, *shape: int, device: torch.device, dtype: torch.dtype, grad: bool = False):
    return [
        torch.randn(*shape, device=device, dtype=dtype).requires_grad_(grad) for _ in range(nbuf)
    ]


def _eager_block(x, w, b, pool):
    y = F.relu(F.conv3d(x, w, b))
    return F.avg_pool3d(y, 2) if pool == "avg" else y


def _fused_block(x, w, b, pool):
    return ops.conv3d_block(ops.fast_layout(x, w.shape[1]), w, b, pool=pool)


def _block_sizes(batch: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(input shape, conv output shape) of each backbone block."""
    shapes = []
    spatial = (BANDS, WINDOW, WINDOW)
    for c_in, c_out, pool in BLOCKS:
        conv = tuple(s - 2 for s in spatial)
        shapes.append(((batch, c_in, *spatial), (batch, c_out, *conv)))
        spatial = tuple(s // 2 for s in conv) if pool else conv
    return shapes


def _block_cost(idx: int, batch: int, dtype: torch.dtype, backward: bool) -> tuple[float, float]:
    """FLOPs and minimal bytes of block idx (forward, or forward + backward)."""
    (xs, ys) = _block_sizes(batch)[idx]
    c_in, c_out, pool = BLOCKS[idx]
    conv = ys[0] * ys[1] * ys[2] * ys[3] * ys[4]
    out = conv // 8 if pool else conv
    x = xs[0] * xs[1] * xs[2] * xs[3] * xs[4]
    w = c_out * c_in * 27 + c_out
    esize = torch.finfo(dtype).bits // 8
    flops = 2.0 * conv * c_in * 27
    moved = (x + w + out) * esize
    if backward:
        # grad_w always, grad_x except for the network input; the ReLU mask as bytes
        flops *= 3 if idx > 0 else 2
        aux = conv if pool else out * esize
        moved += aux + (out + x + w) * esize + (x * esize if idx > 0 else 0) + w * esize
    return flops, float(moved)


def _compile(fn: Callable, mode: str | None) -> Callable | None:
    return torch.compile(fn, mode=mode, dynamic=False) if mode else None


def block_cases(batch, device, dtype, nbuf, compile_mode) -> list[Case]:
    """Each backbone block alone, forward and forward + backward."""
    cases = []
    for idx in range(len(BLOCKS)):
        cases += _block_pair(idx, batch, device, dtype, nbuf, compile_mode)
    return cases


def _block_pair(idx, batch, device, dtype, nbuf, compile_mode) -> list[Case]:
    c_in, c_out, pool = BLOCKS[idx]
    xs = _block_sizes(batch)[idx][0]
    xgrad = idx > 0  # the first block's input is the network input: no gradient
    xb = _rand(nbuf, *xs, device=device, dtype=dtype, grad=xgrad)
    w = torch.randn(c_out, c_in, 3, 3, 3, device=device, dtype=dtype) / (27 * c_in) ** 0.5
    b = torch.randn(c_out, device=device, dtype=dtype) / 10
    w.requires_grad_()
    b.requires_grad_()

    def fwd(fn):
        def step(i):
            with torch.no_grad():
                return fn(xb[i], w, b, pool)

        return step

    def fwd_bwd(fn):
        def step(i):
            y = fn(xb[i], w, b, pool)
            return torch.autograd.grad(y, [xb[i], w, b] if xgrad else [w, b], torch.ones_like(y))

        return step

    compiled = _compile(_eager_block, compile_mode)
    cases = []
    for backward, make in ((False, fwd), (True, fwd_bwd)):
        flops, moved = _block_cost(idx, batch, dtype, backward)
        cases.append(
            Case(
                name=f"block{idx + 1} {'fwd+bwd' if backward else 'fwd'}",
                shape=f"{tuple(xs)} -> {c_out}, pool={pool}",
                dtype=dtype,
                eager=make(_eager_block),
                s3fn=make(_fused_block),
                compiled=make(compiled) if compiled is not None else None,
                flops=flops,
                min_bytes=moved,
                windows=batch,
            )
        )
    return cases


def backbone_cases(batch, device, dtype, nbuf, compile_mode) -> list[Case]:
    """The three blocks in sequence, forward and forward + backward."""
    params = []
    for c_in, c_out, _ in BLOCKS:
        w = torch.randn(c_out, c_in, 3, 3, 3, device=device, dtype=dtype) / (27 * c_in) ** 0.5
        params += [w.requires_grad_(), (torch.randn(c_out, device=device, dtype=dtype) / 10)]
    for p in params[1::2]:
        p.requires_grad_()
    xb = _rand(nbuf, batch, 1, BANDS, WINDOW, WINDOW, device=device, dtype=dtype)

    def backbone(block):
        def run(x, *ps):
            for k, (_, _, pool) in enumerate(BLOCKS):
                x = block(x, ps[2 * k], ps[2 * k + 1], pool)
            return x

        return run

    def fwd(fn):
        def step(i):
            with torch.no_grad():
                return fn(xb[i], *params)

        return step

    def fwd_bwd(fn):
        def step(i):
            y = fn(xb[i], *params)
            return torch.autograd.grad(y, params, torch.ones_like(y))

        return step

    eager = backbone(_eager_block)
    compiled = _compile(eager, compile_mode)
    shape = f"({batch}, 1, {BANDS}, {WINDOW}, {WINDOW})"
    cases = []
    for backward, make in ((False, fwd), (True, fwd_bwd)):
        costs = [_block_cost(k, batch, dtype, backward) for k in range(len(BLOCKS))]
        cases.append(
            Case(
                name=f"backbone {'fwd+bwd' if backward else 'fwd'}",
                shape=shape,
                dtype=dtype,
                eager=make(eager),
                s3fn=make(backbone(_fused_block)),
                compiled=make(compiled) if compiled is not None else None,
                flops=sum(c[0] for c in costs),
                min_bytes=sum(c[1] for c in costs),
                windows=batch,
            )
        )
    return cases


def cosine_cases(device, dtype, nbuf, compile_mode) -> list[Case]:
    """cosine_alignment_loss forward + backward at the semantic head's shape."""
    n, k, d = COSINE_SHAPE
    fb = _rand(nbuf, n, d, device=device, dtype=dtype, grad=True)
    emb = torch.randn(k, d, device=device, dtype=dtype)
    tb = [torch.randint(0, k, (n,), device=device) for _ in range(nbuf)]

    def make(fn):
        def step(i):
            loss = fn(fb[i], emb, tb[i], 1.0)
            return torch.autograd.grad(loss, [fb[i]])

        return step

    ref = ops.reference.cosine_alignment_loss
    compiled = _compile(ref, compile_mode)
    return [
        Case(
            name="cosine_alignment_loss fwd+bwd",
            shape=f"N={n}, K={k}, d={d}",
            dtype=dtype,
            eager=make(ref),
            s3fn=make(ops.cosine_alignment_loss),
            compiled=make(compiled) if compiled is not None else None,
            flops=3 * 2.0 * n * k * d,
            min_bytes=float((2 * n * d + k * d) * (torch.finfo(dtype).bits // 8)),
        )
    ]


def _fused_model(embeddings: torch.Tensor, device: torch.device) -> torch.nn.Module:
    from s3fn.models import S3FN, SpectralSpatialCNN

    backbone = SpectralSpatialCNN(BANDS, N_CLASSES, window=WINDOW, use_fused_ops=True)
    return S3FN(backbone, embeddings, use_fused_ops=True).to(device)


def model_cases(batch, device, nbuf, compile_mode) -> list[Case]:
    """End-to-end S3FN: a training step (forward, loss, backward, Adam) and inference."""
    emb = torch.randn(N_CLASSES, TEXT_DIM)
    plain = PlainS3FN(BANDS, emb, window=WINDOW).to(device)
    fused = _fused_model(emb, device)
    xb = _rand(nbuf, batch, 1, BANDS, WINDOW, WINDOW, device=device, dtype=torch.float32)
    yb = [torch.randint(0, N_CLASSES, (batch,), device=device) for _ in range(nbuf)]
    compiled_loss = _compile(plain.loss, compile_mode)
    compiled_fwd = _compile(plain, compile_mode)

    def train(model, loss_fn):
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(i):
            opt.zero_grad(set_to_none=True)
            loss_fn(xb[i], yb[i]).backward()
            opt.step()

        return step

    def infer(fn):
        def step(i):
            with torch.inference_mode():
                return fn(xb[i])

        return step

    shape = f"({batch}, 1, {BANDS}, {WINDOW}, {WINDOW}), K={N_CLASSES}, d={TEXT_DIM}"
    cases = [
        Case(
            name="S3FN train step",
            shape=shape,
            dtype=torch.float32,
            eager=train(plain, plain.loss),
            s3fn=train(fused, fused.loss),
            compiled=train(plain, compiled_loss) if compiled_loss is not None else None,
            windows=batch,
        ),
        Case(
            name="S3FN inference",
            shape=shape,
            dtype=torch.float32,
            eager=infer(plain.eval()),
            s3fn=infer(fused.eval()),
            compiled=infer(compiled_fwd) if compiled_fwd is not None else None,
            windows=batch,
        ),
    ]
    if device.type == "cuda":
        cases.append(graph_case(fused, plain, device))
    return cases


def graph_case(fused, plain, device: torch.device, batch: int = 8) -> Case:
    """Small-batch inference replayed from a captured CUDA graph (s3fn) against eager."""
    static_x = torch.randn(batch, 1, BANDS, WINDOW, WINDOW, device=device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode():
        for _ in range(3):
            fused(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        fused(static_x)

    def eager(_):
        with torch.inference_mode():
            return plain(static_x)

    return Case(
        name="S3FN inference, CUDA graph",
        shape=f"({batch}, 1, {BANDS}, {WINDOW}, {WINDOW})",
        dtype=torch.float32,
        eager=eager,
        s3fn=lambda _: graph.replay(),
        windows=batch,
    )


# ---------------------------------------------------------------------------
# Report


def case_record(case: Case, peaks: dict[str, float], device: torch.device) -> dict[str, Any]:
    """The JSON entry of a case: medians, ratios, target, throughput and roofline fractions."""
    eager, comp, ours = (median_ms(case, v) for v in ("eager", "compile", "s3fn"))
    rec: dict[str, Any] = {
        "name": case.name,
        "shape": case.shape,
        "dtype": str(case.dtype).removeprefix("torch."),
        "eager_ms": eager,
        "compile_ms": comp,
        "s3fn_ms": ours,
        "eager_over_s3fn": eager / ours,
        "compile_over_s3fn": comp / ours if comp else None,
        "times_s": case.times,
    }
    target = CPU_TARGETS.get(case.name) if device.type == "cpu" else None
    if target is not None:
        rec.update(target_eager_over_s3fn=target, target_met=eager / ours >= target)
    if case.windows:
        rec["windows_per_s"] = {
            k: case.windows / (v * 1e-3) for k, v in (("eager", eager), ("s3fn", ours)) if v
        }
    if case.flops:
        roof = min(peaks["matmul_flops"], case.flops / case.min_bytes * peaks["copy_bytes_per_s"])
        rec.update(
            flops=case.flops,
            min_bytes=case.min_bytes,
            s3fn_flops_per_s=case.flops / (ours * 1e-3),
            s3fn_roofline_fraction=case.flops / (ours * 1e-3) / roof,
        )
    return rec


def print_table(records: list[dict[str, Any]], device: str) -> None:
    head = f"{'op / model':32} {'shape':46} {'dtype':8} {'dev':4} {'eager ms':>9} "
    head += f"{'compile':>9} {'s3fn ms':>9} {'eager/s3':>8} {'comp/s3':>8}"
    print(head)
    print("-" * len(head))
    for r in records:
        comp = f"{r['compile_ms']:9.2f}" if r["compile_ms"] else f"{'-':>9}"
        cratio = f"{r['compile_over_s3fn']:8.2f}" if r["compile_over_s3fn"] else f"{'-':>8}"
        print(
            f"{r['name']:32} {r['shape'][:46]:46} {r['dtype']:8} {device:4} {r['eager_ms']:9.2f} "
            f"{comp} {r['s3fn_ms']:9.2f} {r['eager_over_s3fn']:8.2f} {cratio}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs every case, prints the table, writes the JSON; returns what it wrote."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batch, 3 repeats, no compile")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch", type=int, help="default: 64 on CPU, 256 on CUDA (16 quick)")
    parser.add_argument("--repeats", type=int, help="timed calls per variant (default 7, quick 3)")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    batch = args.batch or (16 if args.quick else 64 if device.type == "cpu" else 256)
    repeats = args.repeats or (3 if args.quick else 7)
    warmup, nbuf = (1, 2) if args.quick else (2, 3)
    compile_mode = None
    if not args.quick:
        compile_mode = "max-autotune" if device.type == "cuda" else "default"

    info = machine_info(device)
    peaks = measure_peaks(device, dtype, repeats=3 if args.quick else 5)
    torch.manual_seed(0)
    builders: list[Callable[[], list[Case]]] = [
        lambda: block_cases(batch, device, dtype, nbuf, compile_mode),
        lambda: backbone_cases(batch, device, dtype, nbuf, compile_mode),
        lambda: cosine_cases(device, dtype, nbuf, compile_mode),
        lambda: model_cases(batch, device, nbuf, compile_mode),
    ]
    records = []
    for build in builders:
        for case in build():
            if args.only and args.only not in case.name:
                continue
            run_case(case, device, repeats, warmup, nbuf)
            records.append(case_record(case, peaks, device))
            print(
                f"  {case.name}: eager {records[-1]['eager_ms']:.1f} ms, "
                f"s3fn {records[-1]['s3fn_ms']:.1f} ms",
                flush=True,
            )
    print_table(records, device.type)
    result = {
        "machine": info,
        "peaks": peaks,
        "settings": {
            "batch": batch,
            "repeats": repeats,
            "warmup": warmup,
            "buffers": nbuf,
            "compile_mode": compile_mode,
            "quick": args.quick,
        },
        "cases": records,
    }
    out = args.out or RESULTS / f"{machine_name(info)}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
