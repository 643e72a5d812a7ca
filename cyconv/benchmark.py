"""Side-by-side timings: cyconv's kernels against the NumPy reference (and PyTorch), and
whole training steps of small models against PyTorch.

Every implementation runs in the same process on the same arrays, interleaved (one call of
each in turn, repeated), with the same number of threads, and the median of the repeats is
reported: on a shared machine only ratios measured this way mean much.

    python bench/compare.py                 # the whole table, 2 threads
    python bench/compare.py --threads 1     # one thread
    python bench/compare.py --scaling       # cyconv with 1 thread against 2
    cyconv bench --png ratios.png           # the same from the command line, plus a chart
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import threading
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

from . import functional, kernels, models, nn, optim, reference
from .kernels import _parallel
from . import random as cyconv_random
from .autograd import Tensor, no_grad
from .geometry import conv2d_geometry

#: The convolution shapes of the kernels issue:
#: (N, C_in, H, W, C_out, K, stride, padding, dilation, groups).
CONV_SHAPES = {
    "lenet_c1": (64, 1, 28, 28, 6, 5, 1, 0, 1, 1),
    "lenet_c2": (64, 6, 12, 12, 16, 5, 1, 0, 1, 1),
    "cifar_3x3": (32, 32, 32, 32, 64, 3, 1, 1, 1, 1),
    "resnet_3x3": (8, 64, 56, 56, 64, 3, 1, 1, 1, 1),
    "stem_7x7s2": (8, 3, 112, 112, 64, 7, 2, 3, 1, 1),
    "depthwise": (8, 128, 28, 28, 128, 3, 1, 1, 1, 128),
    "dilated": (8, 64, 28, 28, 64, 3, 1, 2, 2, 1),
    "grouped4": (8, 64, 28, 28, 64, 3, 1, 1, 1, 4),
}

#: Pooling cases: name -> (input shape, kind, kernel, stride, padding).
POOL_SHAPES = {
    "max2x2_32": ((32, 64, 32, 32), "max", 2, 2, 0),
    "max3x3s2_32": ((32, 64, 32, 32), "max", 3, 2, 1),
    "avg2x2_32": ((32, 64, 32, 32), "avg", 2, 2, 0),
    "avg3x3s2_32": ((32, 64, 32, 32), "avg", 3, 2, 1),
    "max2x2_56": ((8, 64, 56, 56), "max", 2, 2, 0),
    "max3x3s2_56": ((8, 64, 56, 56), "max", 3, 2, 1),
    "avg2x2_56": ((8, 64, 56, 56), "avg", 2, 2, 0),
    "avg3x3s2_56": ((8, 64, 56, 56), "avg", 3, 2, 1),
}

#: Whole training steps of a model: name -> (model name for ``cyconv.models.get_model``,
#: its keyword arguments, batch size, shape of one input sample (C, H, W)). There is no NumPy
#: implementation of these: cyconv runs against its PyTorch twin (cyconv.models.torch_twins).
TRAIN_CASES = {
    "train_lenet5": ("lenet5", {"input_size": 28, "num_classes": 10}, 64, (1, 28, 28)),
    "train_resnet_small": ("resnet_small", {"num_classes": 10}, 32, (3, 32, 32)),
}

#: the optimizer of the training-step cases: SGD(lr=TRAIN_LR, momentum=TRAIN_MOMENTUM)
TRAIN_LR, TRAIN_MOMENTUM = 0.01, 0.9


@dataclass
class Case:
    """One benchmark: a name, a pass, the work in FLOPs and a callable per implementation."""

    name: str
    step: str
    flops: float
    runs: dict
    #: whether GFLOP/s against the GEMM ceiling means something (not for pooling, whose
    #: "FLOPs" are comparisons or a few additions per output element)
    gemm_bound: bool = True
    #: whether cyconv runs Winograd in this case, which does fewer multiplications than the
    #: direct sum its FLOPs count: its GFLOP/s is an effective rate and may pass the ceiling
    winograd: bool = False


def _conv_case(name: str, spec: tuple, dtype, rng, torch=None) -> list[Case]:
    n, c_in, h, w, c_out, k, stride, padding, dilation, groups = spec
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, k, k)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    geometry = conv2d_geometry(x.shape, weight.shape, **hyper)
    grad_y = rng.standard_normal(geometry.output_shape).astype(dtype)

    def forward(lib):
        return lambda: lib.conv2d(x, weight, bias, **hyper)

    def grad_input(lib):
        return lambda: lib.conv2d_grad_input(grad_y, weight, x.shape, **hyper)

    def grad_weight(lib):
        return lambda: lib.conv2d_grad_weight(grad_y, x, weight.shape, **hyper)

    def forward_backward(lib):
        def run():
            return (lib.conv2d(x, weight, bias, **hyper),
                    lib.conv2d_grad_input(grad_y, weight, x.shape, **hyper),
                    lib.conv2d_grad_weight(grad_y, x, weight.shape, **hyper),
                    lib.conv2d_grad_bias(grad_y))
        return run

    libs = {"cyconv": kernels, "numpy": reference}
    fwd = {label: forward(lib) for label, lib in libs.items()}
    gin = {label: grad_input(lib) for label, lib in libs.items()}
    gw = {label: grad_weight(lib) for label, lib in libs.items()}
    fwd_bwd = {label: forward_backward(lib) for label, lib in libs.items()}
    if torch is not None:
        functional = torch.nn.functional
        tx, tw, tb = (torch.from_numpy(a) for a in (x, weight, bias))
        tgy = torch.from_numpy(grad_y)
        fwd["torch"] = lambda: functional.conv2d(tx, tw, tb, stride, padding, dilation, groups)
        gin["torch"] = lambda: torch.nn.grad.conv2d_input(
            tx.shape, tw, tgy, stride, padding, dilation, groups)
        gw["torch"] = lambda: torch.nn.grad.conv2d_weight(
            tx, tw.shape, tgy, stride, padding, dilation, groups)
        leaves = [t.clone().requires_grad_() for t in (tx, tw, tb)]

        def torch_forward_backward():
            out = functional.conv2d(*leaves, stride, padding, dilation, groups)
            out.backward(tgy)
            for leaf in leaves:
                leaf.grad = None
        fwd_bwd["torch"] = torch_forward_backward
    winograd = {computing: kernels.choose_algorithm(geometry, computing, dtype) == "winograd"
                for computing in ("output", "grad_input")}
    return [Case(name, "forward", geometry.flops, fwd, winograd=winograd["output"]),
            Case(name, "grad_input", geometry.flops, gin, winograd=winograd["grad_input"]),
            Case(name, "grad_weight", geometry.flops, gw),
            Case(name, "fwd+bwd", 3 * geometry.flops, fwd_bwd,
                 winograd=any(winograd.values()))]


def _pool_case(name: str, spec: tuple, dtype, rng, torch=None) -> list[Case]:
    shape, kind, k, stride, padding = spec
    x = rng.standard_normal(shape).astype(dtype)
    if kind == "max":
        y, where = reference.max_pool2d(x, k, stride, padding, return_indices=True)
        grad_y = rng.standard_normal(y.shape).astype(dtype)

        def forward(lib):
            return lambda: lib.max_pool2d(x, k, stride, padding, return_indices=True)

        def backward(lib):
            return lambda: lib.max_pool2d_grad_input(grad_y, where, x.shape)
    else:
        y = reference.avg_pool2d(x, k, stride, padding)
        grad_y = rng.standard_normal(y.shape).astype(dtype)

        def forward(lib):
            return lambda: lib.avg_pool2d(x, k, stride, padding)

        def backward(lib):
            return lambda: lib.avg_pool2d_grad_input(grad_y, x.shape, k, stride, padding)

    fwd = {"cyconv": forward(kernels), "numpy": forward(reference)}
    bwd = {"cyconv": backward(kernels), "numpy": backward(reference)}
    if torch is not None:
        functional = torch.nn.functional
        tx, tgy = torch.from_numpy(x), torch.from_numpy(grad_y)
        leaf = tx.clone().requires_grad_()
        if kind == "max":
            fwd["torch"] = lambda: functional.max_pool2d(tx, k, stride, padding, return_indices=True)
            pool = lambda: functional.max_pool2d(leaf, k, stride, padding)  # noqa: E731
        else:
            fwd["torch"] = lambda: functional.avg_pool2d(tx, k, stride, padding)
            pool = lambda: functional.avg_pool2d(leaf, k, stride, padding)  # noqa: E731
        out = pool()

        def torch_backward():  # backward only: reuse one recorded graph
            leaf.grad = None
            torch.autograd.backward(out, tgy, retain_graph=True)
        bwd["torch"] = torch_backward
    flops = float(np.prod(y.shape) * (k * k))
    return [Case(name, "forward", flops, fwd, gemm_bound=False),
            Case(name, "backward", flops, bwd, gemm_bound=False)]


@contextlib.contextmanager
def _seeded_init(seed: int):
    """cyconv's generator seeded with ``seed`` inside, put back as it was afterwards: the
    models of the training cases get the same weights on every run, and the caller's random
    stream is not disturbed."""
    saved = cyconv_random.generator().bit_generator.state
    cyconv_random.manual_seed(seed)
    try:
        yield
    finally:
        cyconv_random.generator().bit_generator.state = saved


def forward_flops(model, x: np.ndarray) -> int:
    """FLOPs of the convolutions and linear layers in one forward pass of ``model`` on ``x``.

    A multiply-add counts as two FLOPs, as in ``conv2d_geometry(...).flops``: a convolution
    output element costs 2 x (C_in / groups) x kH x kW, a linear output element
    2 x in_features. Biases, activations, pooling and normalisation are not counted. The
    pass runs in eval mode without a graph, so no BatchNorm statistics move.
    """
    total = []

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            weight = module.weight.shape
            total.append(2 * output.data.size * weight[1] * weight[2] * weight[3])
        else:
            total.append(2 * output.data.size * module.in_features)

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with no_grad():
            model(Tensor(x))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return int(sum(total))


def _train_case(name: str, spec: tuple, dtype, torch=None, seed: int = 0) -> list[Case]:
    """One training step (forward, cross-entropy, zero_grad, backward, SGD step) of a model
    in training mode, for cyconv and for its PyTorch twin holding the same weights.

    The batch and the starting weights are fixed by ``seed`` (not by the cases built before:
    selecting other cases does not change them). The weights keep training from call to call
    on the same batch, as in a real loop; both libraries do the same amount of work per call
    whatever the weights are.
    """
    model_name, kwargs, batch, sample_shape = spec
    with _seeded_init(seed):
        model = models.get_model(model_name, **kwargs)
    model.to(dtype).train()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *sample_shape)).astype(dtype)
    target = rng.integers(0, model.num_classes, batch)
    flops = 3 * forward_flops(model, x)  # backward: grad-input + grad-weight, each ~ forward
    optimizer = optim.SGD(model.parameters(), lr=TRAIN_LR, momentum=TRAIN_MOMENTUM)

    def cyconv_step():
        loss = functional.cross_entropy(model(Tensor(x)), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    runs = {"cyconv": cyconv_step}
    if torch is not None:
        from .models.torch_twins import torch_twin

        twin = torch_twin(model_name, **kwargs)
        twin.to(torch.float64 if np.dtype(dtype) == np.float64 else torch.float32)
        twin.load_state_dict({key: torch.from_numpy(value)
                              for key, value in model.state_dict().items()})
        twin.train()
        torch_optimizer = torch.optim.SGD(twin.parameters(), lr=TRAIN_LR, momentum=TRAIN_MOMENTUM)
        tx, ttarget = torch.from_numpy(x), torch.from_numpy(target)

        def torch_step():
            loss = torch.nn.functional.cross_entropy(twin(tx), ttarget)
            torch_optimizer.zero_grad()
            loss.backward()
            torch_optimizer.step()
        runs["torch"] = torch_step
    return [Case(name, "train step", float(flops), runs)]


def measure(case: Case, repeats: int, min_time: float = 0.05, setups: dict | None = None) -> dict[str, float]:
    """Median seconds per call of each implementation, interleaved.

    Each timed sample runs the callable enough times to last about ``min_time`` seconds
    (calibrated once), so that very short kernels are not timer noise. ``setups`` may give,
    per implementation, a callable run (untimed) before each of its samples.
    """
    if not case.runs:
        raise ValueError(f"case {case.name} {case.step} has no implementation to time")
    setups = setups or {}
    loops = {}
    for label, run in case.runs.items():
        setups.get(label, _nothing)()
        run()  # warm up: first-call costs (allocation, thread start-up) are not measured
        start = time.perf_counter()
        run()
        once = max(time.perf_counter() - start, 1e-6)
        loops[label] = max(1, int(min_time / once))
    samples = {label: [] for label in case.runs}
    for _ in range(repeats):
        for label, run in case.runs.items():
            setups.get(label, _nothing)()
            start = time.perf_counter()
            for _ in range(loops[label]):
                run()
            samples[label].append((time.perf_counter() - start) / loops[label])
    return {label: statistics.median(times) for label, times in samples.items()}


def _nothing():
    pass


def _load_torch(use_torch: bool):
    if not use_torch:
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


def build_cases(names=None, dtype=np.float32, torch=None, seed=0) -> list[Case]:
    """The benchmark cases (all, or those named), with their arrays (and models) allocated.

    Convolutions, then pooling, then the training steps (``TRAIN_CASES``).
    """
    known = list(CONV_SHAPES) + list(POOL_SHAPES) + list(TRAIN_CASES)
    if names is not None:
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise ValueError(f"unknown case name(s) {unknown}; choose from {known}")
    rng = np.random.default_rng(seed)
    cases = []
    for name, spec in CONV_SHAPES.items():
        if names is None or name in names:
            cases += _conv_case(name, spec, dtype, rng, torch)
    for name, spec in POOL_SHAPES.items():
        if names is None or name in names:
            cases += _pool_case(name, spec, dtype, rng, torch)
    for name, spec in TRAIN_CASES.items():
        if names is None or name in names:
            cases += _train_case(name, spec, dtype, torch, seed)
    return cases


def _returned_bytes(result) -> int:
    """Bytes of the NumPy arrays in ``result`` (an array, or a tuple/list/dict of them,
    nested), each underlying buffer counted once (a view counts as the array it views)."""
    seen, total, stack = set(), 0, [result]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            root = item
            while isinstance(root.base, np.ndarray):
                root = root.base
            if id(root) not in seen:
                seen.add(id(root))
                total += root.nbytes
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return total


def peak_extra_bytes(run, clear_workspaces: bool = True) -> int:
    """Peak memory one call of ``run`` allocates beyond the arrays it returns, in bytes.

    Measured with :mod:`tracemalloc`, which sees NumPy's array allocations (NumPy registers
    them with it) and Python objects: the peak of the traced memory during the call, minus
    what was traced before it, minus the size of the returned arrays. With
    ``clear_workspaces`` (the default) the scratch buffers that cyconv's im2col keeps from
    call to call (``cyconv.kernels.conv._workspace``) are dropped first, so the call
    allocates them again and they are counted: a workspace cached by an earlier call would
    otherwise be invisible. Not seen: memory allocated by C code without telling
    tracemalloc (OpenBLAS's own buffers, PyTorch's allocator, ``malloc`` in the Cython
    kernels).
    """
    if clear_workspaces:
        _clear_workspaces()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(0, peak - before - _returned_bytes(result))


def _clear_workspaces() -> None:
    """Drop cyconv's cached im2col workspaces (of this Python thread)."""
    from .kernels import conv as conv_kernels

    local = getattr(conv_kernels, "_local", None)
    if isinstance(local, threading.local):
        local.__dict__.clear()


#: Bytes of the array settle_allocator allocates and frees: above every benchmark's output
#: arrays, below glibc's largest adaptive mmap threshold (32 MiB on 64-bit Linux).
SETTLE_BYTES = 24 * 2**20


def settle_allocator() -> None:
    """Put the C allocator in the state a long-running process reaches: allocate and free
    one array of SETTLE_BYTES.

    glibc's malloc serves a large block (above 128 KiB at first) by mapping fresh pages from
    the kernel, and each call then pays a page fault per 4 KiB it touches; freeing such a
    block raises that threshold to its size, after which blocks up to that size are reused
    from the heap. A training loop frees large arrays all the time and lives in the second
    state; a benchmark that has not freed one yet measures the first. Measured here on the
    forward pass of stem_7x7s2, cifar_3x3 (torch / cyconv ms): 4.77 / 1.86 and 8.77 / 4.36
    before, 1.76 / 1.72 and 3.16 / 3.03 after. So every comparison runs after this call,
    whatever ran before it in the process. (Elsewhere it does nothing harmful: one 24 MiB
    allocation.)
    """
    block = np.ones(SETTLE_BYTES // 4, np.float32)     # touched, so really mapped
    del block


def gemm_ceiling(threads: int, dtype=np.float32, size: int = 2048, repeats: int = 7,
                 seed: int = 0) -> float:
    """GFLOP/s of NumPy's matrix product of two ``size`` x ``size`` matrices of ``dtype``
    (sgemm for float32) on ``threads`` BLAS threads: the median of ``repeats`` calls after
    a warm-up call, counting 2 x size^3 FLOPs per product. The ceiling a GEMM-based
    convolution can approach on this machine. The thread count is put back afterwards."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    out = np.empty((size, size), dtype)
    before = kernels.get_num_threads()
    kernels.set_num_threads(threads)
    try:
        np.matmul(a, b, out=out)
        times = []
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append(time.perf_counter() - start)
    finally:
        kernels.set_num_threads(before)
    return 2.0 * size ** 3 / statistics.median(times) / 1e9


def multiply_add_peak(threads: int, seconds: float = 0.1, repeats: int = 5) -> float:
    """GFLOP/s of float32 vector multiply-adds, 12 independent ones a step, on ``threads``
    threads (kernels._parallel.multiply_adds): the most a convolution's inner loop, which
    is made of such multiply-adds, can reach on this machine. The best of ``repeats`` runs
    of about ``seconds`` each, after a warm-up run: other work on the machine can only slow
    a run down. (Runs of 20 ms came out up to 20% lower: the cores seem to take a while
    to reach full speed on this work.)"""
    flops_per_step = 2 * _parallel.PEAK_ACCUMULATORS * _parallel.PEAK_LANES * threads
    steps = 1000
    start = time.perf_counter()
    _parallel.multiply_adds(steps, threads)                       # warm-up, and calibration
    steps = max(steps, int(steps * seconds / max(time.perf_counter() - start, 1e-6)))
    rates = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        _parallel.multiply_adds(steps, threads)
        rates.append(flops_per_step * steps / (time.perf_counter() - start) / 1e9)
    return max(rates)


def _format_table(rows: list[dict], with_torch: bool, ceiling: float | None = None,
                  memory: bool = False) -> str:
    """The markdown table; an implementation a case does not have (numpy for the training
    steps) shows "-", and so do the ratios that would need it.

    With ``ceiling`` (GFLOP/s of the GEMM), a column gives cyconv's GFLOP/s as a fraction of
    it (for the GEMM-bound cases: rows whose ``gemm_bound`` is False show "-"); with
    ``memory``, a column gives each row's ``peak`` (bytes, from ``peak_extra_bytes``) in MiB.
    """
    header = ["shape", "pass", "cyconv ms", "numpy ms"]
    header += ["torch ms"] if with_torch else []
    header += ["numpy / cyconv"] + (["torch / cyconv"] if with_torch else []) + ["cyconv GFLOP/s"]
    header += ["of sgemm ceiling"] if ceiling is not None else []
    header += ["peak extra MiB"] if memory else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def ms(row, label):
        return f"{row[label] * 1e3:.3f}" if row.get(label) is not None else "-"

    def ratio(row, label):
        if row.get(label) is None or row.get("cyconv") is None:
            return "-"
        return f"{row[label] / row['cyconv']:.2f}x"

    for row in rows:
        cells = [row["name"], row["step"], ms(row, "cyconv"), ms(row, "numpy")]
        if with_torch:
            cells.append(ms(row, "torch"))
        cells.append(ratio(row, "numpy"))
        if with_torch:
            cells.append(ratio(row, "torch"))
        gflops = row["flops"] / row["cyconv"] / 1e9 if row.get("cyconv") else None
        cells.append(f"{gflops:.1f}" if gflops is not None else "-")
        if ceiling is not None:
            useful = gflops is not None and row.get("gemm_bound", True) and ceiling > 0
            cells.append(f"{100 * gflops / ceiling:.0f}%" if useful else "-")
        if memory:
            peak = row.get("peak")
            cells.append(f"{peak / 2 ** 20:.2f}" if peak is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_ratios(rows: list[dict], path, threads: int, dtype=np.float32) -> None:
    """A PNG bar chart (matplotlib's Agg canvas, no pyplot state) of the ratios
    torch time / cyconv time and numpy time / cyconv time of every row, on a log scale, with
    a line at 1: bars to the right of it are cases where cyconv is faster."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    labels = [f"{row['name']} {row['step']}" for row in rows]
    series = [(label, color) for label, color in (("torch", "tab:red"), ("numpy", "tab:blue"))
              if any(row.get(label) is not None and row.get("cyconv") for row in rows)]
    figure = Figure(figsize=(8, 1.5 + 0.32 * len(rows) * max(1, len(series))))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    height = 0.8 / max(1, len(series))
    positions = np.arange(len(rows))[::-1].astype(float)
    for index, (label, color) in enumerate(series):
        values = [row[label] / row["cyconv"] if row.get(label) is not None and row.get("cyconv")
                  else np.nan for row in rows]
        offset = (index - (len(series) - 1) / 2) * height
        values = np.asarray(values, float)
        # bars from 1 to the ratio: right of the line cyconv is faster, left slower
        axes.barh(positions - offset, values - 1.0, left=1.0, height=height, color=color,
                  label=f"{label} time / cyconv time")
        for y, value in zip(positions - offset, values):
            if np.isfinite(value):
                axes.annotate(f"{value:.2f}x", (value, y), va="center", fontsize=7,
                              ha="left" if value >= 1 else "right",
                              xytext=(3 if value >= 1 else -3, 0), textcoords="offset points")
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_xscale("log")
    axes.margins(x=0.15)
    axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_xlabel("time ratio (right of 1: cyconv faster)")
    axes.set_title(f"cyconv against the others, {threads} thread{'s' if threads != 1 else ''} "
                   f"each, {np.dtype(dtype).name}, medians")
    if series:
        axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)


def _ceiling_note(rows: list[dict], ceiling: float, gemm: str) -> str:
    """A note for the table if cyconv ran faster than the GEMM ceiling, which says that the
    ceiling was measured in a slow moment; "" otherwise. Pooling rows, and rows where
    cyconv runs Winograd (whose rate counts the multiplications it saves), are left out."""
    above = [f"{row['name']} {row['step']}" for row in rows
             if row["gemm_bound"] and not row.get("winograd")
             and row.get("cyconv") and row["flops"] / row["cyconv"] / 1e9 > ceiling]
    if not above:
        return ""
    return (f"\n\nnote: {len(above)} case(s) ran faster than the measured {gemm} ceiling "
            f"({', '.join(above[:3])}{', ...' if len(above) > 3 else ''}): the ceiling's "
            "measurement was probably slowed by other load; run again")


def run_comparison(threads: int = 2, repeats: int = 7, names=None, dtype=np.float32,
                   use_torch: bool = True, progress=print, *, min_time: float = 0.05,
                   gemm_size: int = 2048, memory: bool = True, png=None,
                   markdown=None) -> str:
    """Time every case and return the markdown table (ratios > 1 mean cyconv is faster),
    preceded by lines giving the measured GEMM ceiling and multiply-add peak.

    ``png``: also write a bar chart of the ratios there; ``markdown``: also write the text
    returned there. cyconv's, BLAS's and PyTorch's thread counts are put back afterwards.
    """
    torch = _load_torch(use_torch)
    cases = build_cases(names, dtype, torch)    # checks the names before anything is timed
    settle_allocator()
    threads_before = kernels.get_num_threads()
    torch_threads_before = torch.get_num_threads() if torch is not None else None
    try:
        peak = multiply_add_peak(threads)          # first: no BLAS thread is awake yet
        ceiling = gemm_ceiling(threads, dtype, gemm_size)
        gemm = "sgemm" if np.dtype(dtype) == np.float32 else "dgemm"
        head = (f"{gemm} ceiling: NumPy {np.dtype(dtype).name} matmul {gemm_size}x{gemm_size}, "
                f"{threads} thread{'s' if threads != 1 else ''}: {ceiling:.1f} GFLOP/s\n"
                f"multiply-add peak: float32 vectors of {_parallel.PEAK_LANES}, "
                f"{threads} thread{'s' if threads != 1 else ''}: {peak:.1f} GFLOP/s")
        kernels.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        rows = []
        for case in cases:
            medians = measure(case, repeats, min_time)
            row = dict(name=case.name, step=case.step, flops=case.flops,
                       gemm_bound=case.gemm_bound, winograd=case.winograd, **medians)
            if memory:
                row["peak"] = peak_extra_bytes(case.runs["cyconv"])
            rows.append(row)
            if progress:
                progress(f"  {case.name:<18} {case.step:<11} " + "  ".join(
                    f"{label} {seconds * 1e3:8.3f} ms" for label, seconds in medians.items()))
    finally:
        kernels.set_num_threads(threads_before)
        if torch is not None:
            torch.set_num_threads(torch_threads_before)
    text = head + "\n\n" + _format_table(rows, torch is not None, ceiling, memory)
    text += _ceiling_note(rows, ceiling, gemm)
    if markdown is not None:
        with open(markdown, "w", encoding="utf-8") as file:
            file.write(text + "\n")
    if png is not None:
        plot_ratios(rows, png, threads, dtype)
    return text


def run_scaling(repeats: int = 7, names=None, dtype=np.float32, threads: int = 2,
                progress=print) -> str:
    """cyconv on 1 thread against ``threads`` threads, interleaved; returns a markdown table,
    preceded by the same speed-up of the machine's multiply-add peak (multiply_add_peak):
    on a machine whose cores slow down when all of them work, no loop gains more.

    The last column is that probe again, timed within each case's samples (a run of
    multiply_adds on 1 thread and on ``threads``, interleaved with the kernel's): on a
    shared machine whose other tenants take a core for seconds at a time, it shows which
    readings they spoiled."""
    cases = build_cases(names, dtype, None)
    peaks = {n: multiply_add_peak(n) for n in (1, threads)}
    lines = [f"multiply-add peak: 1 thread {peaks[1]:.1f} GFLOP/s, {threads} threads "
             f"{peaks[threads]:.1f} GFLOP/s: {peaks[threads] / peaks[1]:.2f}x", "",
             f"| shape | pass | 1 thread ms | {threads} threads ms | speed-up | probe speed-up |",
             "|---|---|---|---|---|---|"]
    if progress:
        progress(lines[0])
    settle_allocator()
    for case in cases:
        run = case.runs["cyconv"]
        pair = Case(case.name, case.step, case.flops,
                    {"1": run, "n": run, "probe 1": _probe, "probe n": _probe})
        one, many = (lambda: kernels.set_num_threads(1)), (lambda: kernels.set_num_threads(threads))
        medians = measure(pair, repeats, setups={"1": one, "n": many, "probe 1": one,
                                                 "probe n": many})
        line = (f"| {case.name} | {case.step} | {medians['1'] * 1e3:.3f} | {medians['n'] * 1e3:.3f} "
                f"| {medians['1'] / medians['n']:.2f}x "
                f"| {threads * medians['probe 1'] / medians['probe n']:.2f}x |")
        lines.append(line)
        if progress:
            progress("  " + line)
    return "\n".join(lines)


#: multiply_adds steps of one probe call (_probe): about 2 ms on one thread here, so that
#: the start of a parallel region (tens of microseconds) hardly counts
PROBE_STEPS = 500_000


def _probe():
    """A short run of the multiply-add probe on get_num_threads() threads, each thread doing
    PROBE_STEPS steps: the same work for every thread, so it takes as long on n threads as
    on 1 unless the cores slow down when they all work, or are taken away."""
    _parallel.multiply_adds(PROBE_STEPS, kernels.get_num_threads())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench/compare.py`` and ``cyconv bench`` (they share them)."""
    parser.add_argument("--threads", type=_positive_int, default=2, metavar="N",
                        help="threads for every implementation (default: 2)")
    parser.add_argument("--repeats", type=_positive_int, default=7, metavar="R",
                        help="interleaved repeats, the median is taken (default: 7)")
    parser.add_argument("--shapes", nargs="+", default=None, metavar="NAME",
                        help="only these cases: " + ", ".join(
                            list(CONV_SHAPES) + list(POOL_SHAPES) + list(TRAIN_CASES)))
    parser.add_argument("--float64", action="store_true", help="float64 instead of float32")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--scaling", action="store_true",
                        help="cyconv on 1 thread against --threads threads")
    parser.add_argument("--png", metavar="FILE", help="also draw the time ratios into FILE (PNG)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table into FILE")
    parser.add_argument("--no-memory", action="store_true",
                        help="leave out the peak-memory column (one traced call per case)")
    # for tests: seconds per timed sample, and the size of the GEMM of the ceiling
    parser.add_argument("--min-time", type=_positive_float, default=0.05, help=argparse.SUPPRESS)
    parser.add_argument("--gemm-size", type=_positive_int, default=2048, help=argparse.SUPPRESS)


def run_from_args(args: argparse.Namespace) -> int:
    """Run what the options of ``add_arguments`` ask for and print the table; a bad case
    name or option combination raises ValueError."""
    dtype = np.float64 if args.float64 else np.float32
    for option, path in (("--png", args.png), ("--markdown", args.markdown)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ValueError(f"{option}: no such directory: {os.path.dirname(path)}")
    if args.png and not args.scaling:
        import matplotlib  # noqa: F401  (fail now, not after the whole run)
    if args.scaling:
        if args.png:
            raise ValueError("--png draws the comparison's ratios; it does not go with --scaling")
        text = run_scaling(args.repeats, args.shapes, dtype, args.threads)
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as file:
                file.write(text + "\n")
    else:
        text = run_comparison(args.threads, args.repeats, args.shapes, dtype, not args.no_torch,
                              min_time=args.min_time, gemm_size=args.gemm_size,
                              memory=not args.no_memory, png=args.png, markdown=args.markdown)
    print(text)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    raise SystemExit(main())
