"""``save(obj, path)`` / ``load(path)``: state dicts and checkpoints as ``.npz`` files.

What can be saved: a state dict (``model.state_dict()``), or a whole checkpoint such as::

    {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3,
     "metrics": {"val_acc": [0.91, 0.93]}}

that is, dicts (with ``str`` or ``int`` keys; ``OrderedDict`` stays an ``OrderedDict``),
lists, tuples, NumPy arrays (any dtype but ``object``), NumPy scalars, Tensors (saved as
their ``.data``, loaded as arrays), and Python ``int``, ``float``, ``bool``, ``str`` and
``None``, nested in any way. ``load`` gives back the same structure, with the same types,
key order and values.

The file format is a plain ``.npz`` (a zip of ``.npy`` files, what ``numpy.savez``
writes), so ``numpy.load(path)`` can open it without cyconv:

- every array is one entry, named after where it sits (``model/conv1.weight``,
  ``optimizer/state/0/exp_avg``);
- the entry ``__cyconv_manifest__`` is a ``uint8`` array holding UTF-8 JSON: the format
  tag ``"cyconv-checkpoint"``, the format version, and the structure, with every
  non-array value written out and every array named by its entry.

Nothing is pickled (files are read with ``allow_pickle=False``), so loading a file from
somewhere else cannot run code.

The write is atomic: the data goes to a temporary file in the target's directory, which is
flushed to disk and then renamed onto the target. If saving fails half-way (a full disk, an
interrupted process) the file that was at ``path`` before is unchanged.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .autograd import Tensor

__all__ = ["save", "load", "FORMAT", "VERSION", "MANIFEST_ENTRY"]

FORMAT = "cyconv-checkpoint"
VERSION = 1
MANIFEST_ENTRY = "__cyconv_manifest__"

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


# --- saving ----------------------------------------------------------------------------------

def _describe_path(keys: tuple) -> str:
    """How to reach a value from the saved object, e.g. ``obj['optimizer']['state'][0]``."""
    return "obj" + "".join(f"[{key!r}]" for key in keys)


class _Flattener:
    """Walks the object: returns its JSON description and collects the arrays to write."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}  # entry name -> array, in order
        self._active: set[int] = set()  # ids of the containers being walked (cycle check)

    def _entry_name(self, keys: tuple) -> str:
        """A readable, unique entry name from the keys leading to the array.

        Only a label: the manifest records which entry holds which array, so characters
        that zip treats specially (separators, NUL, which ends a zip name) become "_",
        and a name already taken gets a "~n" suffix.
        """
        parts = []
        for key in keys:
            part = str(key).encode("utf-8", "replace").decode("utf-8")  # lone surrogates
            part = "".join("_" if c in "/\\" or ord(c) < 32 else c for c in part)
            parts.append("_" if part in ("", ".", "..") else part[:200])
        base = "/".join(parts)[:1000] or "array"
        name, n = base, 1
        while name in self.arrays or name == MANIFEST_ENTRY:
            name = f"{base}~{n}"
            n += 1
        return name

    def _array(self, array: np.ndarray, keys: tuple, **extra) -> dict:
        if array.dtype.hasobject:
            raise TypeError(f"cannot save the array at {_describe_path(keys)}: its dtype "
                            f"{array.dtype} holds Python objects, which would need pickle")
        name = self._entry_name(keys)
        self.arrays[name] = array
        return {"type": "array", "entry": name, **extra}

    def describe(self, value, keys: tuple = ()) -> dict:
        # bool before int (bool is a subclass of int); numpy scalars are not Python numbers
        # except np.float64 (a float subclass), so test NumPy types first
        if isinstance(value, np.generic):
            return self._array(np.asarray(value), keys, scalar=True)
        if value is None:
            return {"type": "none"}
        if isinstance(value, bool):
            return {"type": "bool", "value": value}
        if isinstance(value, int):
            return {"type": "int", "value": int(value)}
        if isinstance(value, float):
            if math.isfinite(value):  # repr/JSON round-trips every finite float exactly
                return {"type": "float", "value": float(value)}
            # JSON has no nan/inf: write their 64 bits (keeps the sign and payload of a NaN)
            return {"type": "float", "bits": struct.pack(">d", value).hex()}
        if isinstance(value, str):
            return {"type": "str", "value": str(value)}
        if isinstance(value, Tensor):
            return self._array(np.asarray(value.data), keys)
        if isinstance(value, np.ndarray):
            return self._array(np.asarray(value), keys)
        if isinstance(value, (Mapping, list, tuple)):
            if id(value) in self._active:
                raise ValueError(f"cannot save a structure that contains itself "
                                 f"(at {_describe_path(keys)})")
            self._active.add(id(value))
            try:
                return self._container(value, keys)
            finally:
                self._active.discard(id(value))
        raise TypeError(f"cannot save the value at {_describe_path(keys)}: type "
                        f"{type(value).__module__}.{type(value).__qualname__} is not "
                        f"supported (supported: dict, list, tuple, numpy arrays and scalars, "
                        f"Tensor, int, float, bool, str, None)")

    def _container(self, value, keys: tuple) -> dict:
        if isinstance(value, Mapping):
            items = []
            for key, item in value.items():
                if isinstance(key, str):
                    key_json = ["str", key]
                elif isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
                    key_json = ["int", int(key)]
                else:
                    raise TypeError(f"cannot save the dict at {_describe_path(keys)}: key "
                                    f"{key!r} of type {type(key).__name__} is not a str or "
                                    f"an int")
                items.append([key_json, self.describe(item, keys + (key,))])
            kind = "ordered_dict" if isinstance(value, OrderedDict) else "dict"
            return {"type": kind, "items": items}
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {"type": kind,
                "items": [self.describe(item, keys + (i,)) for i, item in enumerate(value)]}


def _check_path(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return path


def save(obj, path) -> None:
    """Save a state dict or checkpoint (see the module docstring) to ``path``, atomically.

    ``path`` is used exactly as given: unlike ``numpy.savez``, no ``.npz`` is appended.
    An existing file at ``path`` is replaced only once the new one is completely written.
    Raises TypeError, naming where it sits in ``obj``, for a value that cannot be saved
    (nothing is written then).
    """
    path = _check_path(path)
    flattener = _Flattener()
    root = flattener.describe(obj)  # all type errors surface here, before any file exists
    manifest = json.dumps({"format": FORMAT, "version": VERSION, "root": root},
                          ensure_ascii=True, allow_nan=False)
    manifest_array = np.frombuffer(manifest.encode("utf-8"), dtype=np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path!r}: the directory {directory!r} does "
                                f"not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path!r}: it is a directory")

    # a new, unique temporary file next to the target (same file system, so the final
    # rename is atomic); os.open with O_EXCL never reuses someone else's file, and mode
    # 0o666 lets the umask decide the permissions, as for any newly created file
    base = os.path.basename(path)
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        with os.fdopen(fd, "wb") as file:
            with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED,
                                 allowZip64=True) as archive:
                _write_entry(archive, MANIFEST_ENTRY, manifest_array)
                for name, array in flattener.arrays.items():
                    _write_entry(archive, name, array)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _write_entry(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(name + ".npy", mode="w", force_zip64=True) as entry:
        np.lib.format.write_array(entry, array, allow_pickle=False)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); harmless where directories can't be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- loading ---------------------------------------------------------------------------------

class _Corrupt(Exception):
    """Raised inside load for a broken file; turned into a ValueError naming the path."""


def load(path):
    """Load what :func:`save` wrote to ``path``: the same structure, with NumPy arrays.

    Raises FileNotFoundError if there is no file at ``path``, and ValueError, naming the
    path, if the file is not a cyconv checkpoint (e.g. another program's ``.npz``) or is
    corrupt or truncated. Either the whole object is returned or an error is raised.
    """
    path = _check_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot load {path!r}: it is a directory")

    with open(path, "rb") as file:
        head = file.read(4)
        if len(head) == 0:
            raise ValueError(f"{path!r} is not a cyconv checkpoint: the file is empty")
        if head not in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
            what = ("a single .npy array" if head == b"\x93NUM" else "not an .npz (zip) archive")
            raise ValueError(f"{path!r} is not a cyconv checkpoint: {what}")
        file.seek(0)
        try:
            archive = zipfile.ZipFile(file)
        except Exception as error:  # whatever the zip reader trips on, the file is broken
            raise ValueError(f"{path!r} is corrupt or truncated: it starts like an .npz "
                             f"archive but cannot be read ({error})") from None
        with archive:
            names = set(archive.namelist())
            if MANIFEST_ENTRY + ".npy" not in names:
                shown = sorted(n[:-4] if n.endswith(".npy") else n for n in names)
                more = "" if len(shown) <= 10 else f" and {len(shown) - 10} more"
                raise ValueError(f"{path!r} is not a cyconv checkpoint: it has no "
                                 f"{MANIFEST_ENTRY!r} entry (it holds {shown[:10]}{more}); "
                                 f"an .npz written by NumPy can be read with numpy.load")
            try:
                manifest = _read_manifest(archive, path)
                return _Builder(archive, names).build(manifest["root"])
            except RecursionError:
                error = "the manifest is nested too deeply"
            except _Corrupt as caught:
                error = caught
            raise ValueError(f"{path!r} is corrupt or truncated: {error}") from None


def _read_entry(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    try:
        with archive.open(name + ".npy") as entry:
            array = np.lib.format.read_array(entry, allow_pickle=False)
            if entry.read(1):
                raise _Corrupt(f"entry {name!r} has data after its array")
            return array
    except _Corrupt:
        raise
    except Exception as error:  # bad CRC, short data, a broken .npy header, ...
        raise _Corrupt(f"entry {name!r} cannot be read ({type(error).__name__}: {error})") from None


def _read_manifest(archive: zipfile.ZipFile, path: str) -> dict:
    array = _read_entry(archive, MANIFEST_ENTRY)
    if array.dtype != np.uint8 or array.ndim != 1:
        raise _Corrupt(f"the manifest is a {array.dtype} array of shape {array.shape}, "
                       f"not uint8 text")
    try:
        manifest = json.loads(array.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise _Corrupt(f"the manifest is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ValueError(f"{path!r} is not a cyconv checkpoint: its manifest has format tag "
                         f"{found!r}, expected {FORMAT!r}")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _Corrupt(f"the manifest has an invalid format version {version!r}")
    if version > VERSION:
        raise ValueError(f"{path!r} was written in cyconv checkpoint format version "
                         f"{version}, but this version of cyconv reads only up to version "
                         f"{VERSION}: upgrade cyconv to load it")
    if "root" not in manifest:
        raise _Corrupt("the manifest describes no object")
    return manifest


class _Builder:
    """Rebuilds the saved object from the manifest, reading each array entry once."""

    def __init__(self, archive: zipfile.ZipFile, names: set):
        self.archive = archive
        self.names = names
        self.used: set[str] = set()

    def build(self, node):
        if not isinstance(node, dict) or "type" not in node:
            raise _Corrupt(f"the manifest has a malformed node: {str(node)[:80]}")
        kind = node["type"]
        try:
            if kind == "none":
                return None
            if kind in ("bool", "int", "str"):
                value = node["value"]
                expected = {"bool": bool, "int": int, "str": str}[kind]
                if type(value) is not expected:
                    raise _Corrupt(f"a {kind} in the manifest holds {value!r}")
                return value
            if kind == "float":
                if "bits" in node:
                    bits = bytes.fromhex(node["bits"])
                    if len(bits) != 8:
                        raise _Corrupt(f"a float in the manifest has bits {node['bits']!r}")
                    return struct.unpack(">d", bits)[0]
                value = node["value"]
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise _Corrupt(f"a float in the manifest holds {value!r}")
                return float(value)
            if kind == "array":
                return self._array(node)
            if kind in ("list", "tuple"):
                items = [self.build(item) for item in node["items"]]
                return tuple(items) if kind == "tuple" else items
            if kind in ("dict", "ordered_dict"):
                result = OrderedDict() if kind == "ordered_dict" else {}
                for (key_type, key), item in node["items"]:
                    if not ((key_type == "str" and type(key) is str)
                            or (key_type == "int" and type(key) is int)):
                        raise _Corrupt(f"a dict key in the manifest is malformed: "
                                       f"{[key_type, key]!r}")
                    result[key] = self.build(item)
                return result
        except (KeyError, TypeError, ValueError) as error:
            raise _Corrupt(f"the manifest has a malformed {kind!r} node "
                           f"({type(error).__name__}: {error})") from None
        raise _Corrupt(f"the manifest has a node of unknown type {kind!r}")

    def _array(self, node: dict):
        name = node["entry"]
        if not isinstance(name, str) or name + ".npy" not in self.names:
            raise _Corrupt(f"the manifest refers to an array entry {name!r} that is missing")
        array = _read_entry(self.archive, name)
        if node.get("scalar"):
            if array.ndim != 0:
                raise _Corrupt(f"entry {name!r} should hold a scalar, has shape {array.shape}")
            return array[()]
        return array
