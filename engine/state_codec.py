"""A job's checkpoint as bytes: its structure as JSON, its arrays as raw bytes after it.

A checkpoint is a tree of dicts, lists, strings, numbers, None and numpy arrays (the populations, elites, keys). JSON
with base64 text for the arrays cost the coordinator milliseconds per generation on its event loop and a third
more bytes; here the tree's structure is JSON with each array replaced by ``{"$array": i}``, and the arrays follow
it, each as its dtype, shape and raw bytes. Nothing is pickled: damaged bytes raise ``ValueError``, never run code.

Layout: ``MAGIC``, the header's length (8 bytes, little-endian), the header (UTF-8 JSON:
``{"tree": ..., "arrays": [[dtype, shape, offset, nbytes], ...]}``), then the arrays' bytes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

MAGIC = b"MINERCK1"
_ARRAY = "$array"


def pack(tree: Any) -> bytes:
    """``tree`` as bytes (``unpack`` gives it back, arrays as new writable arrays)."""
    arrays: list[np.ndarray] = []

    def strip(node: Any) -> Any:
        if isinstance(node, np.ndarray):
            arrays.append(np.ascontiguousarray(node))
            return {_ARRAY: len(arrays) - 1}
        if isinstance(node, dict):
            return {key: strip(value) for key, value in node.items()}
        if isinstance(node, list | tuple):
            return [strip(value) for value in node]
        return node

    structure = strip(tree)
    index, offset = [], 0
    for array in arrays:
        index.append([array.dtype.str, list(array.shape), offset, array.nbytes])
        offset += array.nbytes
    header = json.dumps({"tree": structure, "arrays": index}, separators=(",", ":")).encode()
    return b"".join([MAGIC, len(header).to_bytes(8, "little"), header, *(a.tobytes() for a in arrays)])


def unpack(data: bytes) -> Any:
    """The tree ``pack`` made; ``ValueError`` naming what is wrong if ``data`` is not one, or is damaged."""
    if not data.startswith(MAGIC):
        raise ValueError("not a packed checkpoint (its first bytes are not the format's)")
    start = len(MAGIC) + 8
    size = int.from_bytes(data[len(MAGIC):start], "little")
    try:
        header = json.loads(data[start:start + size])
        body = memoryview(data)[start + size:]
        arrays = []
        for dtype, shape, offset, nbytes in header["arrays"]:
            if offset + nbytes > len(body):
                raise ValueError(f"an array ends at byte {offset + nbytes} of {len(body)}")
            arrays.append(np.frombuffer(body[offset:offset + nbytes], dtype=np.dtype(dtype)).reshape(shape).copy())

        def restore(node: Any) -> Any:
            if isinstance(node, dict):
                if set(node) == {_ARRAY}:
                    return arrays[node[_ARRAY]]
                return {key: restore(value) for key, value in node.items()}
            if isinstance(node, list):
                return [restore(value) for value in node]
            return node

        return restore(header["tree"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # JSON and Unicode errors are ValueErrors
        raise ValueError(f"a damaged checkpoint: {exc}") from None
