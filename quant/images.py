"""Write and load the memory images of a quantized network (format: ``docs/memory-images.md``).

One ``$readmemh`` hex file per memory (one word per line, two's complement, lower-case hex,
``ceil(bits / 4)`` digits), a JSON manifest describing every memory, and optionally the same words
as Xilinx ``.coe`` files. The same :class:`~quant.quantize.IntNet` always gives byte-identical
files: no timestamps, sorted keys, fixed float formatting (``repr`` of float64).
"""

from __future__ import annotations

from dataclasses import asdict

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "ImageError", "memories", "hex_bytes", "write_images",
           "load_images", "export"]

FORMAT = "sdt-memory-images"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


class ImageError(ValueError):
    """Report a memory image that does not match its manifest (missing, truncated, altered)."""


def _unsigned_bits(high: int) -> int:
    return max(1, int(high).bit_length())


def memories(net) -> list[dict]:
    """Return every memory of ``net`` in a fixed order: name, int64 data and word format.

    Order: the stem's pixel zero points (none for event input: it is spikes), then per layer
    (execution order) weight, bias, shift and (vanilla shortcut) identity, then per LIF
    (execution order) its thresholds.
    """
    out = []
    if net.pixel is not None:
        out.append({"name": "pixel.zero_point", "data": net.pixel.zero_point,
                    "bits": net.pixel.bits, "signed": False,
                    "meta": {"scale": net.pixel.scale.tolist(),
                             "real": "x = (code - zero_point) * scale"}})
    for name, layer in net.layers.items():
        geometry = {"kind": layer.kind, "stride": layer.stride, "padding": layer.padding,
                    "groups": layer.groups, "stream": layer.stream,
                    "acc_bits": layer.acc_bits, "scale": layer.scale.tolist()}
        if layer.input_max is not None:
            geometry["input_max"] = layer.input_max   # SEW: spike counts 0..input_max
        out.append({"name": f"{name}.weight", "data": layer.weight, "bits": layer.weight_bits,
                    "signed": True, "meta": geometry})
        out.append({"name": f"{name}.bias", "data": layer.bias, "bits": layer.bias_bits,
                    "signed": True, "meta": {"units": "accumulator"}})
        if layer.identity is not None:
            # Vanilla shortcut: the block's output LIF reads the shifted sums plus the spikes.
            op = "lif_input = (acc << shift) + (identity if spike else 0)"
            out.append({"name": f"{name}.shift", "data": layer.shift,
                        "bits": _unsigned_bits(layer.shift.max()), "signed": False,
                        "meta": {"stream": layer.stream, "op": op}})
            out.append({"name": f"{name}.identity", "data": layer.identity,
                        "bits": _unsigned_bits(layer.identity.max()), "signed": False,
                        "meta": {"spikes": layer.shortcut_from, "op": op}})
        elif layer.shift is not None:
            out.append({"name": f"{name}.shift", "data": layer.shift,
                        "bits": _unsigned_bits(layer.shift.max()), "signed": False,
                        "meta": {"stream": layer.stream, "op": "stream += acc << shift"}})
    for name, lif in net.lifs.items():
        out.append({"name": f"{name}.threshold", "data": lif.threshold,
                    "bits": lif.input_bits + 1, "signed": True,
                    "meta": {"theta": lif.theta, "input_bits": lif.input_bits,
                             "membrane_bits": lif.input_bits, "source": lif.source,
                             "scale": np.asarray(lif.scale, np.float64).tolist(),
                             "rule": "spike = v + x >= threshold; v = 0 if spike else (v+x) >> 1"}})
    return out


def hex_bytes(values: np.ndarray, bits: int, signed: bool = True) -> bytes:
    """Return ``$readmemh`` text: one two's complement word of ``bits`` bits per line.

    Raises
    ------
    ImageError
        If a value does not fit a ``bits``-bit word (signed or unsigned).
    """
    flat = np.asarray(values, dtype=np.int64).reshape(-1)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if flat.size and (flat.min() < low or flat.max() > high):
        raise ImageError(f"values [{flat.min()}, {flat.max()}] do not fit {bits}-bit "
                         f"{'signed' if signed else 'unsigned'} words")
    digits = (bits + 3) // 4
    words = flat.astype(np.uint64) & np.uint64((1 << bits) - 1)
    shifts = np.arange(digits - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = (words[:, None] >> shifts[None, :]) & np.uint64(0xF)
    text = np.empty((flat.size, digits + 1), dtype=np.uint8)
    text[:, :digits] = _HEX[nibbles.astype(np.int64)]
    text[:, digits] = ord("\n")
    return text.tobytes()


def _coe_bytes(values: np.ndarray, bits: int, signed: bool) -> bytes:
    """Return the words as a Xilinx ``.coe`` file (radix 16, comma separated, ``;`` at the end)."""
    lines = hex_bytes(values, bits, signed).decode().split("\n")[:-1]
    body = ",\n".join(lines) if lines else "0"
    return (f"memory_initialization_radix=16;\nmemory_initialization_vector=\n{body};\n").encode()


def _layout(shape) -> str:
    strides = []
    step = 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    terms = " + ".join(f"i{axis}*{stride}" for axis, stride in zip(range(len(shape)),
                                                                     reversed(strides)))
    return f"row-major: address = {terms}" if shape else "address 0"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stream_entry(stream) -> dict:
    """Return a stream's manifest entry (a SEW stream of spike counts says so: ``counts``)."""
    entry = {"producers": stream.producers, "bits": stream.bits, "scale": stream.scale.tolist()}
    if stream.counts:
        entry["counts"] = True
    return entry


def write_images(net, directory: str, coe: bool = False) -> dict:
    """Write every memory and the manifest into an existing empty ``directory``.

    Returns
    -------
    dict
        The manifest written.
    """
    entries = []
    for memory in memories(net):
        data = np.asarray(memory["data"], dtype=np.int64)
        shape = list(data.shape)
        files = {"hex": f"{memory['name']}.hex"}
        payload = hex_bytes(data, memory["bits"], memory["signed"])
        with open(os.path.join(directory, files["hex"]), "wb") as f:
            f.write(payload)
        sha = {"hex": hashlib.sha256(payload).hexdigest()}
        if coe:
            files["coe"] = f"{memory['name']}.coe"
            coe_payload = _coe_bytes(data, memory["bits"], memory["signed"])
            with open(os.path.join(directory, files["coe"]), "wb") as f:
                f.write(coe_payload)
            sha["coe"] = hashlib.sha256(coe_payload).hexdigest()
        entries.append({"name": memory["name"], "files": files, "sha256": sha, "shape": shape,
                        "words": int(data.size), "word_bits": memory["bits"],
                        "signed": memory["signed"], "layout": _layout(shape),
                        **memory["meta"]})
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model": net.cfg.to_dict(),
        "quantization": {"weight_bits": net.weight_bits,
                         "pixel_bits": None if net.pixel is None else net.pixel.bits,
                         "fuse_sepconv": net.fuse_sepconv, "logit_scale": net.logit_scale,
                         "logit_bits": net.logit_bits,
                         "logits": "sum over T of head accumulators; real = sum * logit_scale/T"},
        "streams": {name: _stream_entry(s) for name, s in net.streams.items()},
        "attention": {name: asdict(info) for name, info in net.attention.items()},
        "memories": entries,
    }
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    with open(os.path.join(directory, MANIFEST), "w", encoding="utf-8") as f:
        f.write(text)
    return manifest


def load_images(directory: str, kind: str = "hex") -> tuple[dict, dict]:
    """Load and verify memory images; return ``(manifest, {name: int64 array})``.

    Every file's sha256, word count, word width and shape is checked against the manifest.

    Raises
    ------
    ImageError
        Naming the memory and what differs (missing file, checksum, truncation, bad word).
    """
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise ImageError(f"{directory}: no {MANIFEST}; not a memory image directory")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except json.JSONDecodeError as exc:
        raise ImageError(f"{path}: manifest is not valid JSON ({exc})") from exc
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ImageError(f"{path}: format {manifest.get('format')!r} version "
                         f"{manifest.get('format_version')!r}; this loader reads {FORMAT!r} "
                         f"version {FORMAT_VERSION}")
    arrays = {}
    for entry in manifest["memories"]:
        name = entry["name"]
        if kind not in entry["files"]:
            raise ImageError(f"memory {name}: no {kind} file in the manifest")
        file = os.path.join(directory, entry["files"][kind])
        if not os.path.isfile(file):
            raise ImageError(f"memory {name}: file {file} is missing")
        with open(file, "rb") as f:
            payload = f.read()
        digest = hashlib.sha256(payload).hexdigest()
        if digest != entry["sha256"][kind]:
            lines = payload.count(b"\n")
            hint = (f"; it has {lines} lines, the manifest says {entry['words']} words (truncated?)"
                    if kind == "hex" and lines != entry["words"] else "")
            raise ImageError(f"memory {name}: sha256 of {file} is {digest}, manifest says "
                             f"{entry['sha256'][kind]}{hint}")
        if kind == "hex":
            arrays[name] = _parse_hex(name, payload, entry)
    return manifest, arrays


def _parse_hex(name: str, payload: bytes, entry: dict) -> np.ndarray:
    """Decode and check a ``$readmemh`` payload against its manifest entry."""
    bits, words = entry["word_bits"], entry["words"]
    digits = (bits + 3) // 4
    if len(payload) != words * (digits + 1):
        raise ImageError(f"memory {name}: {len(payload)} bytes, expected {words} words of "
                         f"{digits} hex digits ({words * (digits + 1)} bytes)")
    text = np.frombuffer(payload, dtype=np.uint8).reshape(words, digits + 1)
    if words and np.any(text[:, digits] != ord("\n")):
        raise ImageError(f"memory {name}: a line is not {digits} hex digits")
    lookup = np.full(256, 255, dtype=np.uint8)
    lookup[_HEX] = np.arange(16, dtype=np.uint8)
    nibbles = lookup[text[:, :digits]].astype(np.int64)
    if np.any(nibbles == 255):
        raise ImageError(f"memory {name}: a word holds a character that is not lower-case hex")
    values = np.zeros(words, dtype=np.int64)
    for column in range(digits):
        values = (values << 4) | nibbles[:, column]
    if np.any(values >> bits):
        raise ImageError(f"memory {name}: a word exceeds {bits} bits")
    if entry["signed"]:
        values = np.where(values >> (bits - 1), values - (1 << bits), values)
    return values.reshape(entry["shape"])


def export(net, out_dir: str, coe: bool = False, report: list | None = None) -> dict:
    """Write images and manifest to a new directory ``out_dir``, all or nothing.

    Everything is written into a temporary sibling directory, which is renamed to ``out_dir``
    only when complete: an export that fails midway leaves no partial output.

    Raises
    ------
    FileExistsError
        If ``out_dir`` exists (nothing is overwritten).
    """
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        raise FileExistsError(f"output directory {out_dir} already exists; remove it or choose "
                              f"another")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    try:
        manifest = write_images(net, tmp, coe=coe)
        if report is not None:
            with open(os.path.join(tmp, "report.json"), "w", encoding="utf-8") as f:
                f.write(json.dumps(report, indent=1, sort_keys=True) + "\n")
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest

