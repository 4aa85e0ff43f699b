"""Device files and the devices that ship with perfcast.

A device is what ``perfcast predict --device`` names: one or more fitted predictors of the same
machine and runtime, with a description of how they were made. On disk it is ONE self-contained
JSON file (``DEV.json``, UTF-8)::

    {
      "format": "perfcast-device", "format_version": 1,
      "name": "ort-cpu-1t@amd-epyc",
      "description": "onnxruntime CPU, 1 thread, AMD EPYC",
      "made": {"method": "gbt", "rows": 1020, "source": "...", ...},
      "units": {"latency_ms": "ms per batch", "energy_mj": "mJ per batch", "memory_bytes": "bytes"},
      "targets": ["latency_ms", "memory_bytes"],
      "default_predictor": "gbt",
      "predictors": {
        "gbt": {"name": "gbt", "encoding": "zlib+base64",
                "predictor.json": "<base64 of zlib>", "arrays.safetensors": "<base64 of zlib>"},
        "flops": {"path": "flops-predictor"}
      }
    }

Each entry of ``predictors`` is a saved predictor (:meth:`perfcast.predictors.Predictor.save`:
``predictor.json`` + ``arrays.safetensors``), either embedded (both files zlib-compressed and
base64-encoded: a tree ensemble's text is most of a device and compresses threefold) or referenced
by ``path``, a predictor directory relative to the device file. :func:`save_device` always
embeds, so a device file can be copied alone. No pickle.

Shipped devices are the ``*.json`` files of the ``shipped`` folder beside this module (package
data), written by ``scripts/train_shipped.py``. ``--device`` takes a shipped device's name or the
path of a device file; the default is :data:`DEFAULT_DEVICE`, this project's own CPU measurements.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from perfcast.errors import ModelLoadError, UsageError
from perfcast.predictors import TARGETS, Predictor

FORMAT = "perfcast-device"
FORMAT_VERSION = 1
DEFAULT_DEVICE = "ort-cpu-1t@amd-epyc"
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
UNITS = {"latency_ms": "ms per batch", "energy_mj": "mJ per batch", "memory_bytes": "bytes"}
_PREDICTOR_FILES = ("predictor.json", "arrays.safetensors")
ENCODING = "zlib+base64"


@dataclass
class Device:
    """A named device: its predictors by method name and how they were made."""

    name: str
    predictors: dict[str, Predictor]
    default_predictor: str
    description: str = ""
    made: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def targets(self) -> list[str]:
        """The targets of the default predictor, in :data:`TARGETS` order."""
        return list(self.predictors[self.default_predictor].targets_)

    def predictor(self, method: str | None = None) -> Predictor:
        """The predictor of ``method`` (default: the device's default one)."""
        method = method or self.default_predictor
        if method not in self.predictors:
            raise UsageError(f"--predictor {method}", f"device {self.name} has no such predictor; it has "
                                                      f"{', '.join(sorted(self.predictors))}")
        return self.predictors[method]


# --- predictors inside a device file -------------------------------------------------------------
def _pack(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def _unpack(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text, validate=True))


def _embed(predictor: Predictor) -> dict:
    with tempfile.TemporaryDirectory(prefix="perfcast-") as tmp:
        predictor.save(tmp)
        return {"name": predictor.name, "encoding": ENCODING,
                **{f: _pack((Path(tmp) / f).read_bytes()) for f in _PREDICTOR_FILES}}


def _unembed(entry: dict, where: str) -> Predictor:
    if entry.get("encoding") != ENCODING:
        raise ModelLoadError(where, f"unknown predictor encoding {entry.get('encoding')!r} (expected {ENCODING!r})")
    try:
        files = {f: _unpack(entry[f]) for f in _PREDICTOR_FILES}
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise ModelLoadError(where, f"malformed embedded predictor ({type(exc).__name__}: {exc})") from None
    with tempfile.TemporaryDirectory(prefix="perfcast-") as tmp:
        for f, data in files.items():
            (Path(tmp) / f).write_bytes(data)
        try:
            return Predictor.load(tmp)
        except ModelLoadError as exc:
            raise ModelLoadError(where, exc.problem) from None


def _read_predictor(entry, base_dir: Path, where: str) -> Predictor:
    if not isinstance(entry, dict):
        raise ModelLoadError(where, "a predictor entry must be a JSON object")
    if "path" in entry:
        target = base_dir / str(entry["path"])
        try:
            return Predictor.load(target)
        except ModelLoadError as exc:
            raise ModelLoadError(where, f"predictor at {target}: {exc.problem}") from None
    return _unembed(entry, where)


# --- device files --------------------------------------------------------------------------------
def device_document(device: Device) -> dict:
    """The JSON document of ``device`` with every predictor embedded."""
    if device.default_predictor not in device.predictors:
        raise UsageError(device.name, f"default predictor {device.default_predictor!r} is not among its predictors")
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": device.name,
        "description": device.description, "made": device.made, "units": UNITS, "targets": device.targets,
        "default_predictor": device.default_predictor,
        "predictors": {name: _embed(p) for name, p in device.predictors.items()},
    }


def save_device(device: Device, path: str | os.PathLike) -> Path:
    """Write ``device`` as one self-contained JSON file (written whole, then renamed into place)."""
    out = Path(path)
    text = json.dumps(device_document(device), indent=1) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def _read_document(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelLoadError(str(path), f"cannot read device file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ModelLoadError(str(path), f"not a device file (invalid JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelLoadError(str(path), "not a perfcast device file (format is not 'perfcast-device')")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(str(path), f"device format version {doc.get('format_version')!r}; "
                                        f"this perfcast reads {FORMAT_VERSION}")
    predictors = doc.get("predictors")
    if not isinstance(predictors, dict) or not predictors or doc.get("default_predictor") not in predictors:
        raise ModelLoadError(str(path), "device file has no predictors or no valid default_predictor")
    return doc


@lru_cache(maxsize=16)
def _load_cached(path: str, mtime_ns: int) -> Device:
    p = Path(path)
    doc = _read_document(p)
    predictors = {name: _read_predictor(entry, p.parent, f"{p}: predictor {name}")
                  for name, entry in doc["predictors"].items()}
    return Device(name=str(doc.get("name") or p.stem), predictors=predictors,
                  default_predictor=doc["default_predictor"], description=str(doc.get("description", "")),
                  made=dict(doc.get("made") or {}), path=p)


def load_device(path: str | os.PathLike) -> Device:
    """Read a device file (cached per path and modification time)."""
    p = Path(path).resolve()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        raise ModelLoadError(str(path), "device file not found") from None
    return _load_cached(str(p), mtime)


# --- the shipped devices ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceInfo:
    """What ``perfcast devices`` lists about one device file, read without loading predictors."""

    name: str
    description: str
    targets: tuple[str, ...]
    rows: int | None
    method: str
    predictors: tuple[str, ...]
    path: Path


def device_info(path: str | os.PathLike) -> DeviceInfo:
    p = Path(path)
    doc = _read_document(p)
    made = doc.get("made") or {}
    return DeviceInfo(name=str(doc.get("name") or p.stem), description=str(doc.get("description", "")),
                      targets=tuple(t for t in TARGETS if t in (doc.get("targets") or [])),
                      rows=made.get("rows"), method=str(made.get("method", doc["default_predictor"])),
                      predictors=tuple(doc["predictors"]), path=p)


def shipped_devices() -> list[DeviceInfo]:
    """The devices that ship with perfcast, sorted by name (the default device first)."""
    infos = [device_info(p) for p in sorted(SHIPPED_DIR.glob("*.json"))]
    return sorted(infos, key=lambda d: (d.name != DEFAULT_DEVICE, d.name))


def shipped_file_name(name: str) -> str:
    """The file name of a shipped device: its name with every character outside
    ``[A-Za-z0-9._@-]`` replaced by ``-`` (``hwnasbench:edgegpu`` -> ``hwnasbench-edgegpu.json``)."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._@-") else "-" for c in name) + ".json"


def resolve_device(name_or_file: str | os.PathLike | None = None) -> Device:
    """A device by shipped name or device-file path (default :data:`DEFAULT_DEVICE`)."""
    ref = os.fspath(name_or_file) if name_or_file is not None else DEFAULT_DEVICE
    shipped = SHIPPED_DIR / shipped_file_name(ref)
    if shipped.is_file():
        device = load_device(shipped)
        if device.name == ref:
            return device
    if os.path.isfile(ref):
        return load_device(ref)
    names = [d.name for d in shipped_devices()]
    if ref.endswith(".json") or os.sep in ref:
        raise ModelLoadError(ref, "device file not found")
    raise UsageError(f"--device {ref}", f"unknown device; shipped: {', '.join(names) or 'none'} "
                                        "(or give the path of a device file)")
