"""Atomic file writes: a crash mid-write never leaves a half-written checkpoint or data file behind.

Each writer puts the bytes into a temporary file in the same folder, flushes it to disk, then renames it over the
target. A rename within one folder is atomic, so readers see either the old file or the new one, never a mix.
"""
import csv
import hashlib
import io
import json
import os
import tempfile

import numpy as np


def atomic_write_bytes(path, payload: bytes):
    """Write `payload` to `path` atomically (temporary file + rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp makes files private; use the usual mode
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save_npz(path, arrays: dict, compressed=True):
    """Save a dict of arrays as .npz atomically. Never pickles: object arrays are refused."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; only numeric arrays can be saved")
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_save_json(path, obj):
    """Save a JSON document atomically (indented, keys in insertion order)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def read_json(path, default=None):
    """The JSON file at path, or `default` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def load_npz(path) -> dict:
    """Load every array of an .npz file into a dict (pickles are refused)."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def sha256_of_file(path, chunk_size=1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_digest(folder) -> str:
    """The SHA-256 of a checkpoint's model.npz: what every evaluation of it depends on. It names the weights the
    same way on every clone of the repository, where a file's modification time does not (git sets it to the
    time of the checkout), so an evaluation committed with its checkpoint is not computed again elsewhere."""
    return sha256_of_file(os.path.join(folder, "model.npz"))


def write_csv(folder, name, rows):
    """<folder>/<name>.csv from rows of cells, written atomically."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    atomic_write_bytes(os.path.join(folder, name + ".csv"), text.getvalue().encode("utf-8"))


def format_table(rows):
    """Rows of strings as text with aligned columns, two spaces apart (what the commands print)."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def markdown_table(rows):
    """Rows of strings (the first is the header) as a Markdown table."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])
