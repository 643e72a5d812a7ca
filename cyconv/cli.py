"""The ``cyconv`` command line (also ``python -m cyconv``).

    cyconv train      train a CNN (default: a LeNet-style network on the built-in digits)
    cyconv evaluate   accuracy, per-class accuracy and confusion matrix of a checkpoint
    cyconv summary    a model's layers: output shapes, parameters, receptive fields, FLOPs
    cyconv visualize  PNGs of a trained network's filters and feature maps for one image
    cyconv demo       convolve and pool a small image, checked against the NumPy reference
    cyconv info       which build is installed (OpenMP or serial) and how many threads it uses
    cyconv bench      time the kernels against the NumPy reference and PyTorch (a markdown table)

``main(argv)`` returns the exit code: 0 on success, 2 for bad arguments, missing files and
other errors (printed as ``cyconv <command>: error: ...``, without a traceback), 130 when
interrupted by Ctrl-C. The training machinery lives in :mod:`cyconv.training`; it, tqdm
and matplotlib are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from . import kernels, reference


def _print_matrix(title: str, matrix: np.ndarray) -> None:
    print(title)
    for row in matrix:
        print("   " + " ".join(f"{value:6.2f}" for value in row))


def demo(args: argparse.Namespace) -> int:
    """Find the edges of a small picture with a Sobel kernel, then max-pool the edge map."""
    if args.threads is not None:
        kernels.set_num_threads(args.threads)
    image = np.zeros((1, 1, 8, 8), np.float32)
    image[0, 0, 2:6, 2:6] = 1.0                       # a bright square on a dark ground
    sobel_x = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32).reshape(1, 1, 3, 3)

    edges = kernels.conv2d(image, sobel_x, padding=1)
    pooled, where = kernels.max_pool2d(edges, kernel_size=2, return_indices=True)
    expected_edges = reference.conv2d(image, sobel_x, padding=1)
    expected_pooled = reference.max_pool2d(expected_edges, kernel_size=2)

    _print_matrix("input image (1x1x8x8):", image[0, 0])
    _print_matrix("conv2d with the vertical-edge Sobel kernel, padding=1 (8x8):", edges[0, 0])
    _print_matrix("max_pool2d 2x2, stride 2 (4x4):", pooled[0, 0])
    print("arg-max positions (flat h*W + w in the 8x8 edge map):")
    print("   " + "\n   ".join(" ".join(f"{i:3d}" for i in row) for row in where[0, 0]))
    conv_error = float(np.abs(edges - expected_edges).max())
    pool_error = float(np.abs(pooled - expected_pooled).max())
    ok = conv_error <= 1e-6 and pool_error <= 1e-6
    print(f"checked against cyconv.reference: conv2d max |diff| = {conv_error:.1e}, "
          f"max_pool2d max |diff| = {pool_error:.1e} -> {'OK' if ok else 'MISMATCH'}")
    print(f"({'OpenMP' if kernels.openmp_enabled() else 'serial'} build, "
          f"{kernels.get_num_threads()} threads)")
    return 0 if ok else 1


def info(args: argparse.Namespace) -> int:
    """Print the build and threading facts."""
    from . import __version__

    print(f"cyconv {__version__}")
    print(f"OpenMP: {'yes' if kernels.openmp_enabled() else 'no (serial build)'}")
    print(f"threads: {kernels.get_num_threads()}")
    print(f"numpy {np.__version__}")
    return 0


def bench(args: argparse.Namespace) -> int:
    """The comparison of ``bench/compare.py`` (``cyconv.benchmark``), from the command line."""
    from . import benchmark

    # cyconv (so NumPy and its BLAS) is loaded already: the thread-pool settings in force are
    # those of the environment at start-up, or cyconv's defaults (set at import). PyTorch is
    # imported later, by the benchmark, and reads the same values.
    print(f"cyconv bench: note: thread pools run with OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}, OPENBLAS_THREAD_TIMEOUT="
          f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', '(unset)')} (set them in the environment "
          f"to change them: NumPy is already loaded)", file=sys.stderr)
    return benchmark.run_from_args(args)


# --- argument types: each failure is an argparse error ("cyconv train: error: argument ...")

def _int_at_least(minimum: int, wanted: str):
    """An argparse type: an integer >= minimum, refused as "expected <wanted>, got '...'"."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _float_in(low: float, high: float | None = None, low_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        ok = (value > low if low_open else value >= low) and (high is None or value < high)
        if not ok:  # also NaN
            bound = f"{'>' if low_open else '>='} {low:g}"
            if high is not None:
                bound += f" and < {high:g}"
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}")
        return value
    return parse


def _model_name(text: str) -> str:
    from .models import list_models

    name = text.lower().replace("-", "_")
    if name not in list_models():
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; choose from "
                                         f"{', '.join(list_models())}")
    return name


def _input_shape(text: str) -> tuple[int, int, int]:
    parts = text.replace("x", ",").replace(" ", "").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W (three positive integers, e.g. "
                                         f"1,32,32), got {text!r}")
    return shape


#: the input shape `cyconv summary MODEL` uses when --input-shape is not given
SUMMARY_INPUT_SHAPES = {"lenet5": (1, 32, 32), "digits_net": (1, 8, 8),
                        "vgg_small": (3, 32, 32), "resnet_small": (3, 32, 32)}


class _Threads:
    """Use ``n`` kernel threads inside a ``with`` block (None: leave them), then put them back."""

    def __init__(self, n):
        self.n, self.before = n, None

    def __enter__(self):
        if self.n is not None:
            self.before = kernels.get_num_threads()
            kernels.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            kernels.set_num_threads(self.before)


# --- train -----------------------------------------------------------------------------------

#: train options given on the command line -> TrainConfig fields (None: not given)
_TRAIN_OPTIONS = ("dataset", "model", "epochs", "batch_size", "optimizer", "lr", "momentum",
                  "weight_decay", "scheduler", "augment", "early_stopping", "seed", "limit")


def _quiet_log(*args, **kwargs) -> None:
    pass


def _show_path(path: str) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def train(args: argparse.Namespace) -> int:
    """Train a model; write checkpoints, metrics and plots; print the test accuracy."""
    from .training import TrainConfig, TrainingInterrupted
    from .training import train as run_training

    given = {name: getattr(args, name) for name in _TRAIN_OPTIONS
             if getattr(args, name) is not None}
    log = _quiet_log if args.quiet else print
    progress = False if args.quiet else None
    try:
        if args.resume is not None:
            result = run_training(resume=args.resume, changes=given, out_dir=args.out,
                                  threads=args.threads, progress=progress, log=log)
        else:
            result = run_training(TrainConfig(**given), out_dir=args.out, threads=args.threads,
                                  progress=progress, log=log)
    except TrainingInterrupted as stop:
        print(f"\ncyconv train: {stop}", file=sys.stderr)
        if stop.checkpoint:
            print(f"continue with: cyconv train --resume {_show_path(stop.checkpoint)}",
                  file=sys.stderr)
        return 130
    test = result.test
    right = int(np.trace(test.confusion))
    epochs = len(result.history["epoch"])
    print(f"test accuracy: {100 * test.accuracy:.2f}% ({right}/{len(test.targets)} images), "
          f"loss {test.loss:.4f}, with the weights of epoch {result.best_epoch} "
          f"(lowest validation loss)")
    if epochs:
        print(f"training time: {result.train_time:.1f} s for {epochs} epoch{'s' * (epochs != 1)} "
              f"({result.train_time / epochs:.2f} s per epoch)"
              + ("; stopped early" if result.status == "early_stopped" else ""))
    print(f"wrote to {_show_path(result.out_dir)}:")
    for key, path in result.paths.items():
        if os.path.exists(path):
            print(f"  {_show_path(path)}")
    return 0


# --- evaluate --------------------------------------------------------------------------------

def evaluate(args: argparse.Namespace) -> int:
    """Score a checkpoint on a split of its dataset."""
    from .training import evaluate_checkpoint
    from .training.metrics import format_confusion_matrix, format_per_class_accuracy

    with _Threads(args.threads):
        run, result = evaluate_checkpoint(args.checkpoint, split=args.split,
                                          dataset=args.dataset, batch_size=args.batch_size)
    config, checkpoint = run.config, run.checkpoint
    status = checkpoint.get("status")
    print(f"checkpoint: {_show_path(run.path)} ({config['model']} trained on {run.dataset}, "
          f"epoch {checkpoint['epoch']} of {config.get('epochs', '?')}"
          f"{', interrupted' if status == 'interrupted' else ''})")
    right = int(np.trace(result.confusion))
    print(f"{args.split} split: {len(result.targets)} images")
    print(f"accuracy: {100 * result.accuracy:.2f}% ({right}/{len(result.targets)}), "
          f"loss {result.loss:.4f}")
    print()
    print("per-class accuracy:")
    print(format_per_class_accuracy(result.confusion, run.class_names))
    print()
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(format_confusion_matrix(result.confusion, run.class_names))
    return 0


# --- summary ---------------------------------------------------------------------------------

def summary(args: argparse.Namespace) -> int:
    """Print the layer table of a model."""
    from .models import get_model
    try:
        from .summary import summary as model_summary
    except ImportError as error:  # pragma: no cover
        raise ValueError(f"cyconv.summary is not available ({error})") from None

    shape = args.input_shape or SUMMARY_INPUT_SHAPES.get(args.model, (3, 32, 32))
    channels, height, width = shape
    if height != width:
        raise ValueError(f"the models take square images; --input-shape {channels},{height},"
                         f"{width} is {height}x{width}")
    model = get_model(args.model, num_classes=args.num_classes, in_channels=channels,
                      input_size=height)
    print(model_summary(model, shape))
    return 0


# --- visualize -------------------------------------------------------------------------------

def visualize(args: argparse.Namespace) -> int:
    """Write PNGs of the filters and feature maps of a trained model."""
    from .training import visualize_checkpoint

    with _Threads(args.threads):
        result = visualize_checkpoint(args.checkpoint, image=args.image, index=args.index,
                                      split=args.split, dataset=args.dataset, out_dir=args.out,
                                      invert=args.invert)
    names = result["class_names"]
    line = f"{result['source']}: predicted {names[result['predicted']]} " \
           f"({100 * result['probability']:.1f}%)"
    if result["label"] is not None:
        line += f", label {names[result['label']]}"
    print(line)
    print(f"wrote to {_show_path(result['out_dir'])}:")
    for path in result["paths"]:
        print(f"  {_show_path(path)}")
    return 0


# --- the parser ------------------------------------------------------------------------------

_TRAIN_EPILOG = """\
defaults (the digits recipe: 98.3% test accuracy with seed 0 (98.3-99.4% over seeds 0-9),
about 15 s on 2 cores):
  --dataset digits --model digits_net --epochs 80 --batch-size 32 --optimizer adam
  --lr 3e-3 --scheduler cosine --augment (random shifts of 1 pixel) --seed 0
other datasets: --model lenet5, --epochs 10 (cifar10: 20), --lr 1e-3 (adam/adamw);
sgd: --lr 0.05 (digits) / 0.02, --momentum 0.9; adamw: --weight-decay 0.01.

writes to --out (default runs/<dataset>-<model>-<date>-<time>):
  best.npz, last.npz          checkpoints (best: lowest validation loss; last: latest)
  metrics.csv, metrics.json   loss and accuracy per epoch; test results in the json
  loss.png, accuracy.png      training vs validation curves
  confusion_matrix.png        test-set confusion matrix of the best model

Ctrl-C stops at the end of the current batch and saves last.npz; continue with
  cyconv train --resume RUN_DIR/last.npz
which continues with the run's random state and (unless --threads is given) its thread
count: with --threads 1 the weights are exactly those of a run that was never stopped (with
more threads, up to rounding). When resuming, the saved settings are used; only --epochs,
--early-stopping and the directory of --dataset may change.
examples:
  cyconv train
  cyconv train --epochs 1 --limit 200 --out runs/quick
  cyconv train --dataset mnist:~/data/mnist --epochs 5
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cyconv", description="cyconv: convolutional networks "
                                     "with Cython kernels, for learning and for real.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run_train = commands.add_parser(
        "train", help="train a CNN (default: LeNet-style on the built-in digits)",
        description="Train a convolutional network, with a progress bar and a line per "
                    "epoch;\nsave its checkpoints, metrics and plots.",
        epilog=_TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = run_train.add_argument_group("data")
    data.add_argument("--dataset", metavar="SPEC", help="digits (built in, the default), "
                      "mnist:DIR, fashion-mnist:DIR or cifar10:DIR (the dataset's files in DIR)")
    data.add_argument("--limit", type=_positive_int, metavar="N",
                      help="train on only N training images (picked at random by the seed), "
                           "for quick tries")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                      help="random shifts (digits 1 pixel, MNIST 2; CIFAR-10: crops and "
                           "flips) of the training images (default: on)")
    model = run_train.add_argument_group("model and optimisation")
    model.add_argument("--model", type=_model_name, metavar="NAME",
                       help="lenet5, digits_net, vgg_small or resnet_small (default: digits_net "
                            "for the 8x8 digits, lenet5 otherwise)")
    model.add_argument("--epochs", type=_positive_int, metavar="N")
    model.add_argument("--batch-size", type=_positive_int, metavar="B", help="(default: 32)")
    model.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help="(default: adam)")
    model.add_argument("--lr", type=_float_in(0.0, low_open=True), metavar="LR",
                       help="learning rate")
    model.add_argument("--momentum", type=_float_in(0.0, 1.0), metavar="M",
                       help="SGD momentum (default: 0.9)")
    model.add_argument("--weight-decay", type=_float_in(0.0), metavar="WD")
    model.add_argument("--scheduler", choices=("none", "step", "cosine"),
                       help="learning-rate schedule: cosine (default) decays to 0, step "
                            "divides by 10 every third of the epochs")
    model.add_argument("--early-stopping", type=_non_negative_int, metavar="PATIENCE",
                       help="stop when the validation loss has not improved for PATIENCE "
                            "epochs (default: 0, off)")
    model.add_argument("--seed", type=_non_negative_int, metavar="S", help="(default: 0)")
    run = run_train.add_argument_group("run")
    run.add_argument("--out", metavar="DIR", help="output directory")
    run.add_argument("--resume", metavar="CKPT", help="continue the run saved in CKPT "
                     "(a last.npz, or its directory)")
    run.add_argument("--threads", type=_positive_int, metavar="T",
                     help="threads for the kernels (default: all cores; when resuming, the "
                          "run's own)")
    run.add_argument("--quiet", action="store_true",
                     help="no progress bar and no line per epoch")
    run_train.set_defaults(func=train)

    run_eval = commands.add_parser(
        "evaluate", help="accuracy, per-class accuracy and confusion matrix of a checkpoint",
        description="Score a checkpoint written by 'cyconv train' on a split of its dataset.")
    run_eval.add_argument("checkpoint", metavar="CKPT", help="a best.npz or last.npz (or a run "
                          "directory: its last.npz)")
    run_eval.add_argument("--split", choices=("test", "val", "train"), default="test",
                          help="(default: test)")
    run_eval.add_argument("--dataset", metavar="SPEC", help="the same dataset in another place, "
                          "e.g. mnist:NEW_DIR (default: the one saved in the checkpoint)")
    run_eval.add_argument("--batch-size", type=_positive_int, default=256, metavar="B")
    run_eval.add_argument("--threads", type=_positive_int, metavar="T")
    run_eval.set_defaults(func=evaluate)

    run_summary = commands.add_parser(
        "summary", help="a model's layers: output shapes, parameters, receptive fields, FLOPs",
        description="Print a table of the model's layers. Default input shapes: lenet5 1,32,32; "
                    "digits_net 1,8,8; vgg_small and resnet_small 3,32,32.")
    run_summary.add_argument("model", type=_model_name, metavar="MODEL",
                             help="lenet5, digits_net, vgg_small or resnet_small")
    run_summary.add_argument("--input-shape", type=_input_shape, metavar="C,H,W",
                             help="one input image's shape, e.g. 1,28,28")
    run_summary.add_argument("--num-classes", type=_positive_int, default=10, metavar="K",
                             help="(default: 10)")
    run_summary.set_defaults(func=summary)

    run_vis = commands.add_parser(
        "visualize", help="PNGs of a trained model's filters and feature maps",
        description="Draw the first convolution's filters and the feature maps of every "
                    "convolution for one image. Image files: a .npy array ((H,W), (H,W,C) or "
                    "(C,H,W)) or a PNG; converted to the model's channels (grey <-> colour) "
                    "and size (area averaging to shrink, nearest neighbour to enlarge), "
                    "values scaled into [0, 1].")
    run_vis.add_argument("checkpoint", metavar="CKPT", help="a best.npz or last.npz")
    which = run_vis.add_mutually_exclusive_group()
    which.add_argument("--image", metavar="FILE", help="an image file (.npy or .png)")
    which.add_argument("--index", type=_non_negative_int, metavar="N",
                       help="image N of the checkpoint's dataset (default: 0)")
    run_vis.add_argument("--split", choices=("test", "val", "train"), default="test",
                         help="the split --index counts in (default: test)")
    run_vis.add_argument("--dataset", metavar="SPEC", help="the same dataset in another place")
    run_vis.add_argument("--invert", action="store_true", help="use 1 - image (for dark ink on "
                         "white paper: the digits and MNIST are light on dark)")
    run_vis.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: "
                         "visualize/ next to the checkpoint)")
    run_vis.add_argument("--threads", type=_positive_int, metavar="T")
    run_vis.set_defaults(func=visualize)

    run_demo = commands.add_parser("demo", help="convolve and pool a small image, checked "
                                   "against the NumPy reference")
    run_demo.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                          help="OpenMP threads (default: all cores)")
    run_demo.set_defaults(func=demo)
    run_info = commands.add_parser("info", help="show the build (OpenMP or serial) and threads")
    run_info.set_defaults(func=info)

    from .benchmark import add_arguments as add_bench_arguments

    run_bench = commands.add_parser(
        "bench", help="time the kernels against the NumPy reference and PyTorch",
        description="Time cyconv's kernels, the NumPy reference and PyTorch (if installed) "
                    "interleaved in one process on the same arrays and threads, and print a "
                    "markdown table of medians, ratios, GFLOP/s, the fraction of the measured "
                    "sgemm ceiling and the peak extra memory of cyconv's calls. The same as "
                    "python bench/compare.py; see bench/README.md.")
    add_bench_arguments(run_bench)
    run_bench.set_defaults(func=bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:      # --help (0) or an argparse error (2, message printed)
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except BrokenPipeError:         # the output was piped into a reader that quit (| head)
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except (ValueError, TypeError, OSError, ImportError) as error:
        message = str(error)
        if isinstance(error, OSError) and error.filename and error.strerror:
            message = f"{error.strerror}: {error.filename}"
        print(f"cyconv {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ncyconv {args.command}: interrupted", file=sys.stderr)
        return 130
