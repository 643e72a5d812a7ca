"""Tests of cyconv.save / cyconv.load (cyconv.serialization).

1. round trips: state dicts (dtype, shape, values, key order), nested checkpoints (int
   keys, scalars, strings, None, lists, tuples), random structures (hypothesis), an
   optimizer that resumes identically from a saved checkpoint;
2. the file: a plain .npz that numpy.load reads without pickle, written exactly at the
   given path;
3. atomic writes: a failure at any stage leaves the previous file as it was and no
   temporary file behind;
4. bad files (missing, truncated, corrupt, random bytes, foreign .npz) and unsupported
   objects give clear errors.
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cyconv
from cyconv import serialization
from cyconv.optim import SGD, Adam
from cyconv.serialization import load, save


def assert_same(actual, expected, where="obj"):
    """Equal values *and* equal types, all the way down (nan equals nan, -0.0 is not 0.0)."""
    assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"{where}: keys/order differ"
        assert [type(k) for k in actual] == [type(k) for k in expected], f"{where}: key types"
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{where}: lengths differ"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype, f"{where}: dtype"
        assert actual.shape == expected.shape, f"{where}: shape"
        np.testing.assert_array_equal(actual, expected, err_msg=where)
    elif isinstance(expected, (float, np.floating)):
        assert actual == expected or (math.isnan(actual) and math.isnan(expected)), where
        assert math.copysign(1, actual) == math.copysign(1, expected), f"{where}: sign of zero"
    elif isinstance(expected, np.generic):
        assert actual.dtype == expected.dtype and actual == expected, where
    else:
        assert actual == expected, where


def round_trip(obj, tmp_path, name="obj.npz"):
    path = tmp_path / name
    save(obj, path)
    return load(path)


def a_state_dict():
    rng = np.random.default_rng(0)
    return OrderedDict([
        ("features.0.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
        ("features.0.bias", rng.standard_normal(4).astype(np.float32)),
        ("bn1.running_mean", np.zeros(4, dtype=np.float64)),
        ("bn1.num_batches_tracked", np.array(17, dtype=np.int64)),  # 0-d
        ("classifier.weight", np.asfortranarray(rng.standard_normal((3, 5)))),
        ("classifier.bias", rng.standard_normal(6)[::2]),  # not contiguous
        ("a.empty", np.zeros((0, 3), dtype=np.float32)),
        ("a.mask", np.array([True, False])),
        ("a.half", np.array([1.5, -2.25], dtype=np.float16)),
        ("a.uint8", np.arange(7, dtype=np.uint8)),
        ("a.complex", np.array([1 + 2j])),
    ])


# --- 1. round trips ----------------------------------------------------------------------

def test_state_dict_round_trip(tmp_path):
    sd = a_state_dict()
    loaded = round_trip(sd, tmp_path)
    assert_same(loaded, sd)
    assert list(loaded) == list(sd)  # key order, which is not sorted order
    assert loaded["bn1.num_batches_tracked"].ndim == 0
    assert all(a.flags.writeable for a in loaded.values())


def test_plain_dict_stays_plain_and_ordered_dict_stays_ordered(tmp_path):
    plain = {"z": np.ones(1), "a": np.zeros(1)}
    loaded = round_trip({"plain": plain, "ordered": OrderedDict(plain)}, tmp_path)
    assert type(loaded["plain"]) is dict and list(loaded["plain"]) == ["z", "a"]
    assert type(loaded["ordered"]) is OrderedDict


def test_nested_checkpoint_round_trip(tmp_path):
    checkpoint = {
        "model": a_state_dict(),
        "optimizer": {
            "state": {0: {"step": 3, "exp_avg": np.ones((2, 2))}, 2: {"step": 1}},
            "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "amsgrad": False,
                              "params": [0, 1, 2]}],
        },
        "epoch": 3,
        "metrics": {"val_acc": [0.5, 0.75, 0.875], "best": None},
        "note": "naïve → ✓",
        "flags": [True, False, None],
        "ints": {-1: "minus one", 10 ** 30: "big"},
        "floats": [float("nan"), math.copysign(float("nan"), -1), float("inf"), float("-inf"),
                   -0.0, 1e-310, 0.1, 1.7976931348623157e308],
        "numpy scalars": [np.float32(1.5), np.int64(-7), np.bool_(True), np.float64(0.25)],
        "0-d": np.array(2.5),
        "empty": [{}, [], ()],
        "strings": np.array(["ab", "c"]),
        "": "empty key",
    }
    loaded = round_trip(checkpoint, tmp_path)
    assert_same(loaded, checkpoint)
    assert type(loaded["optimizer"]["param_groups"][0]["betas"]) is tuple
    assert list(loaded["optimizer"]["state"]) == [0, 2]
    assert type(loaded["numpy scalars"][0]) is np.float32
    assert type(loaded["0-d"]) is np.ndarray


def test_top_level_values_other_than_dicts(tmp_path):
    for obj in ([1, 2], np.arange(3), 5, None, "text"):
        assert_same(round_trip(obj, tmp_path), obj)


def test_tensors_are_saved_as_their_data(tmp_path):
    t = cyconv.Tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    loaded = round_trip({"w": t}, tmp_path)
    assert_same(loaded, {"w": t.data})


def test_keys_that_collide_as_entry_names(tmp_path):
    # "a/b" as one key and a -> b nested would both be named "a/b" in the archive
    obj = {"a/b": np.ones(1), "a": {"b": np.zeros(1)}, "__cyconv_manifest__": np.ones(2),
           1: np.full(1, 3.0), "1": np.full(1, 4.0), "..": np.ones(3), "nul\x00": np.ones(4),
           "nul": np.ones(5), "x" * 70000: np.ones(6), "\ud800": np.ones(7)}
    assert_same(round_trip(obj, tmp_path), obj)


nested_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5)
    | st.builds(lambda shape, dtype: (np.arange(np.prod(shape, dtype=int)) % 3).astype(dtype)
                .reshape(shape),
                st.lists(st.integers(0, 3), max_size=3).map(tuple),
                st.sampled_from([np.float32, np.float64, np.int32, np.uint8, np.bool_])),
    lambda children: (st.lists(children, max_size=3)
                      | st.lists(children, max_size=3).map(tuple)
                      | st.dictionaries(st.text(max_size=4) | st.integers(-5, 5), children,
                                        max_size=3)),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None)
@given(obj=nested_values)
def test_random_structures_round_trip(tmp_path_factory, obj):
    path = tmp_path_factory.mktemp("rt") / "x.npz"
    save(obj, path)
    assert_same(load(path), obj)


@pytest.mark.parametrize("cls, kwargs", [(SGD, dict(lr=0.1, momentum=0.9)),
                                         (Adam, dict(lr=0.01, amsgrad=True))])
def test_optimizer_resumes_from_a_saved_checkpoint(tmp_path, cls, kwargs):
    rng = np.random.default_rng(1)
    params = [cyconv.Tensor(rng.standard_normal(s), requires_grad=True) for s in [(3, 2), (2,)]]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(6)]
    opt = cls(params, **kwargs)

    def do_step(o, ps, gs):
        for p, g in zip(ps, gs):
            p.grad = g.copy()
        o.step()

    for gs in grads[:3]:
        do_step(opt, params, gs)
    save({"params": [p.data for p in params], "optimizer": opt.state_dict(), "epoch": 3},
         tmp_path / "ckpt")
    for gs in grads[3:]:
        do_step(opt, params, gs)

    checkpoint = load(tmp_path / "ckpt")
    assert checkpoint["epoch"] == 3
    resumed = [cyconv.Tensor(a, requires_grad=True) for a in checkpoint["params"]]
    opt2 = cls(resumed)
    opt2.load_state_dict(checkpoint["optimizer"])
    for gs in grads[3:]:
        do_step(opt2, resumed, gs)
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(p.data, q.data)


def test_model_state_dict_round_trip_when_nn_is_there(tmp_path):
    nn = pytest.importorskip("cyconv.nn")
    if not all(hasattr(nn, name) for name in ("Linear", "Module")):
        pytest.skip("cyconv.nn has no Linear yet")
    cyconv.manual_seed(0)
    model = nn.Linear(4, 3)
    save(model.state_dict(), tmp_path / "model.npz")
    cyconv.manual_seed(1)
    other = nn.Linear(4, 3)
    other.load_state_dict(load(tmp_path / "model.npz"))
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


# --- 2. the file ---------------------------------------------------------------------------

def test_numpy_reads_the_file_without_pickle(tmp_path):
    sd = a_state_dict()
    save({"model": sd, "epoch": 2}, tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        assert "model/features.0.weight" in archive.files
        np.testing.assert_array_equal(archive["model/features.0.weight"], sd["features.0.weight"])
        manifest = json.loads(archive["__cyconv_manifest__"].tobytes().decode("utf-8"))
    assert manifest["format"] == "cyconv-checkpoint" and manifest["version"] == 1


@pytest.mark.parametrize("name", ["weights", "weights.pt", "weights.npz", "no.npz.suffix"])
def test_written_exactly_at_the_given_path(tmp_path, name):
    save({"x": np.ones(2)}, str(tmp_path / name))
    assert sorted(os.listdir(tmp_path)) == [name]
    assert_same(load(str(tmp_path / name)), {"x": np.ones(2)})


def test_pathlike_and_overwrite(tmp_path):
    path = pathlib.Path(tmp_path) / "w"
    save({"v": 1}, path)
    save({"v": 2}, path)
    assert load(path) == {"v": 2}
    assert os.listdir(tmp_path) == ["w"]


def test_bad_path_arguments(tmp_path):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        save({}, io.BytesIO())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save({}, tmp_path / "no" / "such" / "dir.npz")
    with pytest.raises(IsADirectoryError):
        save({}, tmp_path)


# --- 3. atomic writes ------------------------------------------------------------------------

@pytest.fixture
def previous(tmp_path):
    """A checkpoint already on disk: (its path, its bytes)."""
    path = tmp_path / "model.npz"
    save({"version": "old", "w": np.arange(5.0)}, path)
    return path, path.read_bytes()


def assert_untouched(path, content):
    assert path.read_bytes() == content
    assert os.listdir(path.parent) == [path.name], "a temporary file was left behind"
    assert load(path)["version"] == "old"


def big_checkpoint():
    return {"version": "new", "layers": [np.ones((50, 50)) * i for i in range(5)]}


def test_failure_while_writing_the_arrays(previous, monkeypatch):
    path, content = previous
    real_write_array = np.lib.format.write_array
    calls = []

    def failing_write_array(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the manifest and two arrays are in the temporary file
            raise OSError(28, "No space left on device")
        return real_write_array(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write_array)
    with pytest.raises(OSError, match="No space left"):
        save(big_checkpoint(), path)
    assert len(calls) == 3
    assert_untouched(path, content)


def test_failure_after_the_temporary_file_was_partly_written(previous, monkeypatch):
    # the temporary file really holds bytes when the write fails: kill it "mid-array"
    path, content = previous
    real_write_array = np.lib.format.write_array
    seen_temp = []

    def half_then_fail(fp, array, *args, **kwargs):
        if array.size == 2500:
            fp.write(array.tobytes()[:1000])
            seen_temp.extend(n for n in os.listdir(path.parent) if n != path.name)
            raise KeyboardInterrupt  # even a Ctrl-C must not leave the temporary file
        return real_write_array(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        save(big_checkpoint(), path)
    assert len(seen_temp) == 1 and seen_temp[0].startswith(".model.npz.")
    assert_untouched(path, content)


@pytest.mark.parametrize("stage", ["fsync", "replace"])
def test_failure_at_fsync_or_rename(previous, monkeypatch, stage):
    path, content = previous

    def fail(*args, **kwargs):
        raise OSError(5, f"simulated {stage} failure")

    monkeypatch.setattr(serialization.os, stage, fail)
    with pytest.raises(OSError, match=f"simulated {stage} failure"):
        save(big_checkpoint(), path)
    monkeypatch.undo()
    assert_untouched(path, content)


def test_temporary_file_is_in_the_target_directory(previous, monkeypatch):
    path, _ = previous
    real_replace = os.replace
    moves = []

    def recording_replace(src, dst):
        moves.append((os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(serialization.os, "replace", recording_replace)
    save(big_checkpoint(), path)
    ((src, dst),) = moves
    assert os.path.dirname(os.path.abspath(src)) == str(path.parent)
    assert dst == str(path)
    assert load(path)["version"] == "new"


def test_unsupported_object_writes_nothing(previous):
    path, content = previous
    with pytest.raises(TypeError):
        save({"version": "new", "bad": {1, 2}}, path)
    assert_untouched(path, content)


# --- 4. errors --------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load(path)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95, "all but one byte"])
def test_truncated_file(tmp_path, fraction):
    path = tmp_path / "model.npz"
    save({"model": a_state_dict(), "epoch": 1}, path)
    data = path.read_bytes()
    keep = len(data) - 1 if fraction == "all but one byte" else int(len(data) * fraction)
    path.write_bytes(data[:keep])
    with pytest.raises(ValueError, match=r"model\.npz.* is corrupt or truncated"):
        load(path)


def test_corrupted_bytes_inside_an_array(tmp_path):
    path = tmp_path / "model.npz"
    weights = np.arange(1000, dtype=np.float64)
    save({"w": weights}, path)
    data = bytearray(path.read_bytes())
    where = bytes(data).find(weights[500:502].tobytes())
    assert where > 0
    data[where] ^= 0xFF  # one flipped byte: the zip's CRC-32 catches it
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"is corrupt or truncated: entry 'w'.*CRC"):
        load(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=r"random\.npz.* is not a cyconv checkpoint"):
        load(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError,
                       match=r"empty\.npz.* is not a cyconv checkpoint: the file is empty"):
        load(path)


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weight=np.ones(3), bias=np.zeros(2))
    with pytest.raises(ValueError, match=r"foreign\.npz.* is not a cyconv checkpoint: it has "
                                         r"no '__cyconv_manifest__' entry \(it holds "
                                         r"\['bias', 'weight'\]"):
        load(path)


def test_single_npy_file(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.ones(3))
    with pytest.raises(ValueError, match=r"is not a cyconv checkpoint: a single \.npy array"):
        load(path)


def _npz_with_manifest(path, manifest_text, **arrays):
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in {"__cyconv_manifest__": np.frombuffer(manifest_text.encode(), np.uint8),
                            **arrays}.items():
            with archive.open(name + ".npy", "w") as entry:
                np.lib.format.write_array(entry, array)


def test_manifest_of_another_format(tmp_path):
    path = tmp_path / "other.npz"
    _npz_with_manifest(path, json.dumps({"format": "something-else", "version": 1, "root": None}))
    with pytest.raises(ValueError, match=r"is not a cyconv checkpoint: its manifest has format "
                                         r"tag 'something-else'"):
        load(path)


def test_newer_format_version(tmp_path):
    path = tmp_path / "future.npz"
    _npz_with_manifest(path, json.dumps({"format": "cyconv-checkpoint", "version": 2,
                                         "root": {"type": "none"}}))
    with pytest.raises(ValueError, match=r"format version 2.*reads only up to version 1"):
        load(path)


@pytest.mark.parametrize("manifest, match", [
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "cyconv-checkpoint", "version": 1,
                 "root": {"type": "array", "entry": "gone"}}), "entry 'gone' that is missing"),
    (json.dumps({"format": "cyconv-checkpoint", "version": 1,
                 "root": {"type": "dict", "items": [[["str", "a"], {"type": "martian"}]]}}),
     "unknown type 'martian'"),
    (json.dumps({"format": "cyconv-checkpoint", "version": 1,
                 "root": {"type": "dict", "items": [[["float", 1.5], {"type": "none"}]]}}),
     "dict key"),
])
def test_broken_manifest_is_reported_as_corrupt(tmp_path, manifest, match):
    path = tmp_path / "broken.npz"
    _npz_with_manifest(path, manifest)
    with pytest.raises(ValueError, match=rf"broken\.npz.* is corrupt or truncated: .*{match}"):
        load(path)


@pytest.mark.parametrize("obj, error, match", [
    ({"a": {"b": {1, 2}}}, TypeError, r"obj\['a'\]\['b'\]: type builtins.set is not supported"),
    ({"opt": {"state": {0: {"f": lambda: 0}}}}, TypeError, r"obj\['opt'\]\['state'\]\[0\]\['f'\]"),
    ({"x": [1, object()]}, TypeError, r"obj\['x'\]\[1\]"),
    ({"o": np.array([1, "a"], dtype=object)}, TypeError, r"obj\['o'\].*dtype object"),
    ({("a", 1): np.ones(1)}, TypeError, r"key \('a', 1\) of type tuple is not a str or an int"),
    ({True: 1}, TypeError, r"key True of type bool"),
    ({"c": 1 + 2j}, TypeError, r"obj\['c'\]: type builtins.complex"),
])
def test_unsupported_objects(tmp_path, obj, error, match):
    with pytest.raises(error, match=match):
        save(obj, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_self_containing_structure(tmp_path):
    loop = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(ValueError, match=r"contains itself \(at obj\['a'\]\[0\]\)"):
        save(loop, tmp_path / "x.npz")
    # the same list twice (not a cycle) is fine, and is saved twice
    shared = [1, 2]
    assert load_after_save({"p": shared, "q": shared}, tmp_path) == {"p": [1, 2], "q": [1, 2]}


def load_after_save(obj, tmp_path):
    save(obj, tmp_path / "y.npz")
    return load(tmp_path / "y.npz")
