"""``cyconv bench`` and the measuring helpers of cyconv.benchmark (tiny runs: a few seconds)."""

import numpy as np
import pytest

from cyconv import benchmark, cli, kernels

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_bench_command_writes_table_and_chart(tmp_path, capsys):
    threads_before = kernels.get_num_threads()
    code = cli.main(["bench", "--shapes", "lenet_c2", "max2x2_32", "--repeats", "1",
                     "--no-torch", "--min-time", "0.002", "--gemm-size", "256",
                     "--png", str(tmp_path / "r.png"), "--markdown", str(tmp_path / "r.md")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "OMP_WAIT_POLICY=" in err and "OPENBLAS_THREAD_TIMEOUT=" in err
    assert kernels.get_num_threads() == threads_before        # put back after the run
    table = (tmp_path / "r.md").read_text()
    assert table.strip() in out                                # the same text is printed
    lines = table.splitlines()
    assert lines[0].startswith("sgemm ceiling: NumPy float32 matmul 256x256, 2 threads: ")
    assert lines[1].startswith(f"multiply-add peak: float32 vectors of "
                               f"{kernels._parallel.PEAK_LANES}, 2 threads: ")
    assert lines[1].endswith(" GFLOP/s")
    header = next(line for line in lines if line.startswith("| shape"))
    for column in ("numpy / cyconv", "cyconv GFLOP/s", "of sgemm ceiling", "peak extra MiB"):
        assert f"| {column} |" in header
    assert "torch" not in header                               # --no-torch
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line
            for line in lines if line.startswith("| ") and line is not header}
    for step in ("forward", "grad_input", "grad_weight", "fwd+bwd"):
        assert ("lenet_c2", step) in rows
        assert rows[("lenet_c2", step)].rstrip(" |").split("|")[-2].strip().endswith("%")
    for step in ("forward", "backward"):
        cells = [cell.strip() for cell in rows[("max2x2_32", step)].strip("|").split("|")]
        assert cells[-2] == "-"                                # pooling: no GEMM fraction
    assert (tmp_path / "r.png").read_bytes()[:8] == PNG_SIGNATURE


def test_bench_unknown_shape_is_an_error(capsys):
    assert cli.main(["bench", "--shapes", "no_such_case", "--no-torch"]) == 2
    err = capsys.readouterr().err
    assert "cyconv bench: error:" in err and "no_such_case" in err


def test_bench_bad_threads_is_an_argument_error(capsys):
    assert cli.main(["bench", "--threads", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err


def test_peak_extra_bytes_counts_temporaries_not_the_result():
    def allocates_eight_mib():
        scratch = np.ones(1 << 20)                             # 8 MiB of float64, freed
        return scratch[:10].copy()

    extra = benchmark.peak_extra_bytes(allocates_eight_mib)
    assert 8 * 2 ** 20 <= extra < 8.5 * 2 ** 20

    def returns_its_allocation():
        return np.ones(1 << 20), np.zeros(4)
    assert benchmark.peak_extra_bytes(returns_its_allocation) < 2 ** 16


def test_peak_extra_bytes_counts_cyconv_workspaces_again():
    """The im2col workspaces cached by an earlier call are dropped and counted."""
    x = np.ones((4, 8, 16, 16), np.float32)
    w = np.ones((8, 8, 3, 3), np.float32)
    kernels.conv2d(x, w, padding=1, algorithm="im2col")        # fills the workspace cache
    run = lambda: kernels.conv2d(x, w, padding=1, algorithm="im2col")  # noqa: E731
    columns = 8 * 9 * 16 * 16 * 4                              # one image's im2col matrix
    assert benchmark.peak_extra_bytes(run) >= columns
    assert benchmark.peak_extra_bytes(run, clear_workspaces=False) < columns


def test_format_table_new_columns():
    rows = [dict(name="a", step="forward", flops=2e9, cyconv=1.0, numpy=2.0, peak=3 * 2 ** 20),
            dict(name="p", step="backward", flops=1e9, cyconv=1.0, numpy=1.0, gemm_bound=False)]
    lines = benchmark._format_table(rows, with_torch=False, ceiling=4.0, memory=True).splitlines()
    assert lines[2] == "| a | forward | 1000.000 | 2000.000 | 2.00x | 2.0 | 50% | 3.00 |"
    assert lines[3] == "| p | backward | 1000.000 | 1000.000 | 1.00x | 1.0 | - | - |"


def test_plot_ratios_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [dict(name="a", step="forward", flops=1.0, cyconv=1.0, numpy=2.0, torch=0.5),
            dict(name="t", step="train step", flops=1.0, cyconv=1.0, torch=2.0)]
    benchmark.plot_ratios(rows, tmp_path / "c.png", threads=1)
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_SIGNATURE


def test_bench_output_in_missing_directory_fails_before_running(tmp_path, capsys):
    code = cli.main(["bench", "--shapes", "lenet_c2", "--no-torch",
                     "--markdown", str(tmp_path / "missing" / "r.md")])
    assert code == 2
    assert "no such directory" in capsys.readouterr().err


def test_algorithms_table_marks_the_fastest_and_what_auto_picks(capsys):
    """bench/algorithms.py (the measurements behind choose_algorithm) on one small shape."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "algorithms.py"
    spec = importlib.util.spec_from_file_location("bench_algorithms", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.table(["rs_l2a_s2"], repeats=1)
    rows = [line.split(" | ") for line in text.splitlines()[2:]]
    assert [row[1] for row in rows] == ["output", "grad_input", "grad_weight"]
    for row in rows:
        assert row[2] in ("direct", "im2col", "blocked")
        assert sum("**" in cell for cell in row[3:]) == 1      # one fastest per pass
    assert rows[1][5].strip(" |") == "-"                       # blocked cannot: stride 2
    assert text.splitlines()[0] in capsys.readouterr().out


def test_two_processes_prints_both_ratios_for_each_shape():
    """bench/two_processes.py (the machine's own 2-core speed-up) runs as a script."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import cyconv

    script = Path(__file__).resolve().parent.parent / "bench" / "two_processes.py"
    # the script's interpreter imports the cyconv this test runs (installed or built in place)
    where = str(Path(cyconv.__file__).resolve().parent.parent)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [where, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script), "--shapes", "depthwise", "lenet_c2",
                           "--rounds", "1", "--seconds", "0.05"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "x |" in line]
    assert [row.split(" | ")[0] for row in rows] == ["| depthwise", "| lenet_c2"]
    for row in rows:
        ratios = [float(cell.strip(" |x")) for cell in row.split(" | ")[1:]]
        assert len(ratios) == 2 and all(0 < ratio < 10 for ratio in ratios)
    refused = subprocess.run([sys.executable, str(script), "--rounds", "0"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert refused.returncode == 2 and "--rounds must be at least 1" in refused.stderr


def test_comparisons_settle_the_allocator_before_timing_any_case(monkeypatch):
    """So that no case is timed while glibc still maps fresh pages for every large block
    (see settle_allocator): a comparison and a scaling run each free the large array first."""
    events = []
    monkeypatch.setattr(benchmark, "settle_allocator", lambda: events.append("settle"))
    real_measure = benchmark.measure
    monkeypatch.setattr(benchmark, "measure",
                        lambda *args, **kwargs: events.append("measure")
                        or real_measure(*args, **kwargs))
    benchmark.run_comparison(1, 1, ["max2x2_32"], use_torch=False, progress=None,
                             min_time=0.001, gemm_size=64, memory=False)
    assert events == ["settle", "measure", "measure"]          # forward, backward
    events.clear()
    table = benchmark.run_scaling(1, ["max2x2_32"], progress=None).splitlines()
    assert events == ["settle", "measure", "measure"]
    assert table[0].startswith("multiply-add peak: 1 thread ") and " 2 threads " in table[0]
    assert table[2] == "| shape | pass | 1 thread ms | 2 threads ms | speed-up | probe speed-up |"
    assert len(table) == 6 and all(row.count("|") == 7 for row in table[2:])


def test_settle_allocator_frees_what_it_allocates():
    import tracemalloc

    tracemalloc.start()
    try:
        benchmark.settle_allocator()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak >= benchmark.SETTLE_BYTES       # the block was really allocated ...
    assert current < 2**20                      # ... and freed


@pytest.mark.parametrize("threads", [1, 2])
def test_multiply_adds_runs_every_step_on_every_thread(threads):
    """Each accumulator starts at its index (0..11) in every lane and adds b = 0.5 a step
    (a = 1): after 1000 steps, lanes * (66 + 12 * 500) per thread, exactly in float32."""
    lanes = kernels._parallel.PEAK_LANES
    assert lanes in (8, 16)
    total = kernels._parallel.multiply_adds(1000, threads, 1.0, 0.5)
    assert total == threads * lanes * (66 + 12 * 0.5 * 1000)
    assert kernels._parallel.multiply_adds(0, threads) == threads * lanes * 66


def test_multiply_adds_refuses_bad_counts():
    with pytest.raises(ValueError, match="steps must be >= 0 and threads >= 1, got 10 and 0"):
        kernels._parallel.multiply_adds(10, 0)
    with pytest.raises(ValueError, match="got -1 and 1"):
        kernels._parallel.multiply_adds(-1, 1)


def test_multiply_add_peak_is_a_rate():
    peak = benchmark.multiply_add_peak(1, seconds=0.002, repeats=3)
    assert np.isfinite(peak) and peak > 0


def test_cases_that_run_winograd_are_marked_and_left_out_of_the_ceiling_note(monkeypatch):
    """Winograd's GFLOP/s counts the multiplications it saves, so passing the sgemm ceiling
    says nothing about the ceiling's measurement there; elsewhere it does."""
    flags = {(case.name, case.step): case.winograd
             for case in benchmark.build_cases(["resnet_3x3", "dilated", "stem_7x7s2"])}
    assert flags == {("resnet_3x3", "forward"): True, ("resnet_3x3", "grad_input"): True,
                     ("resnet_3x3", "grad_weight"): False, ("resnet_3x3", "fwd+bwd"): True,
                     ("dilated", "forward"): True, ("dilated", "grad_input"): True,
                     ("dilated", "grad_weight"): False, ("dilated", "fwd+bwd"): True,
                     ("stem_7x7s2", "forward"): False, ("stem_7x7s2", "grad_input"): False,
                     ("stem_7x7s2", "grad_weight"): False, ("stem_7x7s2", "fwd+bwd"): False}
    monkeypatch.setattr(benchmark, "gemm_ceiling", lambda *args, **kwargs: 1e-9)
    monkeypatch.setattr(benchmark, "multiply_add_peak", lambda *args, **kwargs: 1.0)
    text = benchmark.run_comparison(1, 1, ["lenet_c2"], use_torch=False, progress=None,
                                    min_time=0.001, memory=False)
    assert "note: 4 case(s) ran faster than the measured sgemm ceiling (lenet_c2 forward" in text


def test_ceiling_note_leaves_out_pooling_and_winograd():
    row = dict(name="a", step="forward", flops=4e9, cyconv=1.0, gemm_bound=True, winograd=False)
    rows = [row, dict(row, name="w", winograd=True), dict(row, name="p", gemm_bound=False)]
    assert benchmark._ceiling_note(rows, 3.0, "sgemm") == (
        "\n\nnote: 1 case(s) ran faster than the measured sgemm ceiling (a forward): the "
        "ceiling's measurement was probably slowed by other load; run again")
    assert benchmark._ceiling_note(rows, 5.0, "sgemm") == ""


def test_ab_builds_times_two_copies_of_the_kernels(tmp_path):
    """bench/ab_builds.py (two builds of the kernels timed against each other in one
    process) on two copies of the build under test: every case gets both times and a
    ratio near 1."""
    import importlib.util
    import shutil
    from pathlib import Path

    from cyconv import kernels

    path = Path(__file__).resolve().parent.parent / "bench" / "ab_builds.py"
    spec = importlib.util.spec_from_file_location("bench_ab_builds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = Path(kernels.__file__).resolve().parent
    for copy in ("a", "b"):                  # one .so can be loaded once: two copies
        (tmp_path / copy).mkdir()
        for name in module.KERNEL_MODULES:
            for so in built.glob(name + ".*"):
                if so.suffix in (".so", ".pyd"):
                    shutil.copy(so, tmp_path / copy / so.name)
    originals = {(name, wrapper): getattr(getattr(kernels, wrapper), name)
                 for name, wrappers in module.KERNEL_MODULES.items() for wrapper in wrappers}
    try:
        a, b = module.load_build(str(tmp_path / "a")), module.load_build(str(tmp_path / "b"))
        assert a["_pool"] is not originals[("_pool", "pool")] and a["_pool"] is not b["_pool"]
        module.use_build(a)                  # every wrapper now calls build a's kernels
        for (name, wrapper) in originals:
            assert getattr(getattr(kernels, wrapper), name) is a[name]
        lines = []
        rows = module.compare(a, b, ["max2x2_32"], rounds=3, min_time=0.001,
                              progress=lines.append)
    finally:
        for (name, wrapper), original in originals.items():
            setattr(getattr(kernels, wrapper), name, original)
    assert [(row[0], row[1]) for row in rows] == [("max2x2_32", "forward"),
                                                  ("max2x2_32", "backward")]
    for row in rows:
        assert row[2] > 0 and row[3] > 0 and 0.2 < row[4] < 5
    assert lines[0].startswith("| max2x2_32 | forward | ")
    with pytest.raises(FileNotFoundError, match="is .* a built cyconv/kernels"):
        module.load_build(str(tmp_path))
