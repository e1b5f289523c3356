"""`.pt` checkpoints checked before anything unpickles them.

A `.pt` file is a pickle, and unpickling calls whatever the pickle names: a checkpoint can
run any command the moment it is loaded, and ultralytics loads with `weights_only=False`.
So every `.pt` is read once into memory, its pickle is checked opcode by opcode (nothing is
unpickled), and loaders get a copy of exactly those bytes in a private temporary folder.

The rule a checkpoint must meet:

1. It is a zip archive as `torch.save` writes it, read with torch's own zip reader: one
   pickle, `data.pkl`, and tensor data. No TorchScript code or constants, no other pickles,
   no legacy (pre-zip) format.
2. It uses only the pickle opcodes `torch.save` writes (protocol 2).
3. Every global the pickle names is one of
   - a **layer class**: a `torch.nn.Module` subclass defined in `torch.nn.modules.*`,
     `ultralytics.nn.modules.*` or `ultralytics.nn.tasks`. It may only be instantiated the
     way pickle restores objects (NEWOBJ: `__new__`, no constructor, then its state): never
     called, since `DetectionModel(cfg)` builds a model from a description that ultralytics
     partly evaluates as code.
   - a **data builder**, which may be called: torch's tensor and parameter rebuilders,
     `torch.Size`, `collections.OrderedDict`, `set`, `frozenset`, `_codecs.encode` (bytes),
     numpy scalars and dtypes, pathlib paths and ultralytics' `IterableSimpleNamespace`.
     Each only builds a value from its arguments.
   - a **value**: a torch storage type or dtype (tensor storage references).
   A layer class or data builder used in any other place (as a value, an argument or a
   hook), and anything else (`os.system`, `builtins.getattr`, `eval`, ultralytics'
   `AutoBackend`, ...) refuses the file.

Checkpoints written by ultralytics training (`best.pt`, `last.pt` with optimizer state and
training arguments, `YOLO(...).save`) meet it; files that pickle other objects do not.
"""

from __future__ import annotations

import importlib
import io
import pickletools
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import NamedTuple

import torch

from pipeline.core.errors import ModelError, first_line

ZIP_MAGIC = b"PK\x03\x04"
"""How torch.load tells a zip checkpoint from the legacy format (which it unpickles differently)."""
TENSOR_RECORD = re.compile(r"^data/\d+$")
ARCHIVE_RECORDS = frozenset({"data.pkl", "version", ".format_version", ".storage_alignment", "byteorder",
                             ".data/serialization_id", ".data/version"})
LAYER_MODULE_PREFIXES = ("torch.nn.modules.", "ultralytics.nn.modules.")
LAYER_MODULES = frozenset({"ultralytics.nn.tasks"})
DATA_BUILDERS = frozenset({
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.Size",
    "collections.OrderedDict",
    "builtins.set",
    "builtins.frozenset",
    "_codecs.encode",
    "numpy.dtype",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "ultralytics.utils.IterableSimpleNamespace",
})
TORCH_VALUES = frozenset(
    [name for name, value in vars(torch).items() if isinstance(value, type) and name.endswith("Storage")]
    + [name for name, value in vars(torch).items() if isinstance(value, torch.dtype)]
)
"""Names in `torch` that a pickle may reference as plain values: storage types and dtypes."""
OPCODES = frozenset({
    "PROTO", "STOP", "MARK", "NONE", "NEWTRUE", "NEWFALSE", "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT",
    "BINUNICODE", "SHORT_BINSTRING", "BINSTRING", "EMPTY_LIST", "APPEND", "APPENDS", "LIST", "EMPTY_TUPLE",
    "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS", "BINPUT", "LONG_BINPUT",
    "BINGET", "LONG_BINGET", "GLOBAL", "REDUCE", "NEWOBJ", "BUILD", "BINPERSID",
})
"""The opcodes of pickle protocol 2 that `torch.save` writes; no DUP, POP, INST, OBJ, EXT or protocol 4."""


class GlobalKind(str, Enum):
    """What a global named in a checkpoint may be used for."""

    LAYER_CLASS = "layer class"
    DATA_BUILDER = "data builder"
    VALUE = "value"


class PickleGlobal(NamedTuple):
    """A global on the simulated pickle stack."""

    name: str
    kind: GlobalKind


_MARK = object()


def verified_checkpoint(path: Path) -> bytes:
    """The bytes of the `.pt` file `path`, after checking them against the module's rule; ModelError otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read weights {path}: {exc.strerror or exc}") from None
    check_checkpoint(data, str(path))
    return data


@contextmanager
def verified_copy(path: Path) -> Iterator[Path]:
    """A private copy of the checked checkpoint `path`, for loaders that open files by name (ultralytics):
    the file cannot be swapped between the check and the load. Deleted on exit."""
    data = verified_checkpoint(path)
    with tempfile.TemporaryDirectory(prefix="emotion-weights-") as folder:
        copy = Path(folder) / f"{path.stem}.pt"
        copy.write_bytes(data)
        yield copy


def check_checkpoint(data: bytes, origin: str) -> None:
    """Check a checkpoint's bytes (`origin` names it in errors) without unpickling anything."""
    if not data.startswith(ZIP_MAGIC):
        raise ModelError(f"cannot load weights {origin}: not a PyTorch zip checkpoint (legacy or foreign format)")
    try:
        archive = torch._C.PyTorchFileReader(io.BytesIO(data))
        records = archive.get_all_records()
        pickle = archive.get_record("data.pkl") if "data.pkl" in records else None
    except RuntimeError as exc:
        raise ModelError(f"cannot load weights {origin}: not a readable PyTorch checkpoint ({first_line(exc)})") from None
    foreign = sorted(name for name in records if name not in ARCHIVE_RECORDS and not TENSOR_RECORD.match(name))
    if foreign or pickle is None:
        what = f"hold {foreign[0]!r}" if foreign else "have no data.pkl"
        raise ModelError(f"weights {origin} refused: they {what}, unlike a torch.save checkpoint "
                         "(TorchScript or another format)")
    check_pickle(bytes(pickle), origin)


def check_pickle(pickle: bytes, origin: str) -> None:
    """Walk the pickle's opcodes on a simulated stack: every global allowed, and used only as its kind permits."""
    stack: list[object] = []
    memo: dict[int, object] = {}
    try:
        for opcode, argument, _position in pickletools.genops(pickle):
            name = opcode.name
            if name not in OPCODES:
                raise ModelError(f"weights {origin} refused: they use pickle opcode {name}, which torch.save does not")
            if name == "GLOBAL":
                stack.append(_resolve(str(argument), origin))
            elif name in ("BINPUT", "LONG_BINPUT"):
                memo[argument] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo[argument])
            elif name in ("REDUCE", "NEWOBJ"):
                _check_value(stack.pop(), origin)  # the arguments: a tuple
                _require(stack.pop(), GlobalKind.DATA_BUILDER if name == "REDUCE" else GlobalKind.LAYER_CLASS, origin)
                stack.append(None)
            else:
                _pop_operands(stack, opcode, origin)
                stack.extend(_MARK if item.name == "mark" else None for item in opcode.stack_after)
    except (ValueError, IndexError, KeyError) as exc:  # malformed: truncated, unbalanced stack, unknown memo
        raise ModelError(f"cannot load weights {origin}: malformed pickle "
                         f"({first_line(exc)})") from None


def _resolve(argument: str, origin: str) -> PickleGlobal:
    module, _, name = argument.partition(" ")
    module = "builtins" if module == "__builtin__" else module  # protocol 2 spells builtins the Python 2 way
    dotted = f"{module}.{name}"
    if dotted in DATA_BUILDERS:
        return PickleGlobal(dotted, GlobalKind.DATA_BUILDER)
    if module == "torch" and name in TORCH_VALUES:
        return PickleGlobal(dotted, GlobalKind.VALUE)
    if _is_layer_class(module, name):
        return PickleGlobal(dotted, GlobalKind.LAYER_CLASS)
    raise ModelError(f"weights {origin} refused: they reference {dotted}, which ultralytics checkpoints do not "
                     "(weights may only hold model layers and tensors)")


def _is_layer_class(module: str, name: str) -> bool:
    """True for a `torch.nn.Module` subclass defined (not just imported) in a layer module."""
    if not (module in LAYER_MODULES or module.startswith(LAYER_MODULE_PREFIXES)) or not name.isidentifier():
        return False
    try:
        candidate = getattr(importlib.import_module(module), name, None)
    except (ImportError, ValueError):
        return False
    return (isinstance(candidate, type) and issubclass(candidate, torch.nn.Module)
            and candidate.__module__ == module)


def _require(item: object, kind: GlobalKind, origin: str) -> None:
    if not isinstance(item, PickleGlobal) or item.kind is not kind:
        what = item.name if isinstance(item, PickleGlobal) else "a computed object"
        verb = "call" if kind is GlobalKind.DATA_BUILDER else "instantiate"
        raise ModelError(f"weights {origin} refused: they {verb} {what}, which only a {kind.value} may be")


def _pop_operands(stack: list[object], opcode: pickletools.OpcodeInfo, origin: str) -> None:
    """Pop what `opcode` consumes; a layer class or data builder may not be consumed as a value."""
    for item in reversed(opcode.stack_before):
        if item.name == "stackslice":
            popped = []
            while stack[-1] is not _MARK:
                popped.append(stack.pop())
        else:
            popped = [stack.pop()]
            if item.name == "mark" and popped[0] is not _MARK:
                raise ValueError("mark expected")
        for value in popped:
            _check_value(value, origin)


def _check_value(value: object, origin: str) -> None:
    """A layer class or data builder may not be passed around as a value (an argument, a hook, a dict entry)."""
    if isinstance(value, PickleGlobal) and value.kind is not GlobalKind.VALUE:
        raise ModelError(f"weights {origin} refused: they use {value.name} as a value, which a {value.kind.value} "
                         "may not be")
