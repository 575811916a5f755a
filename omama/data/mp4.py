"""What an MP4 (ISO base media) file's own index says it holds, to tell a file cut short.

A decoder given a truncated MP4 whose index (``moov``) sits at the front decodes the frames
whose data is cut off as damaged images, and says so only on stderr; the index, though, gives
every frame's byte range, so comparing it with the file's size finds the cut.
"""

from __future__ import annotations

import os
import struct

CONTAINERS = ("moov", "trak", "mdia", "minf", "stbl")


def box_header(head: bytes, at: int, end: int) -> tuple[str, int, int]:
    """(type, header length, box length) of the box whose first 16 bytes are ``head``, at byte
    ``at`` of a space ending at ``end`` (length 0: up to the end)."""
    size, kind = struct.unpack(">I4s", head[:8])
    header = 8
    if size == 1:
        size, header = struct.unpack(">Q", head[8:16])[0], 16
    elif size == 0:
        size = end - at
    if size < header:
        raise ValueError(f"malformed MP4 box {kind!r} at byte {at}: size {size}")
    return kind.decode("latin-1"), header, size


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[str, int, int]]:
    """(type, payload start, box end) of the boxes laid out in ``data[start:end]``."""
    end = len(data) if end is None else end
    out, i = [], start
    while i + 8 <= end:
        kind, header, size = box_header(data[i : i + 16], i, end)
        out.append((kind, i + header, i + size))
        i += size
    return out


def top_level(path) -> list[tuple[str, int, int]]:
    """The file's top-level boxes (type, payload start, declared end), read from their headers
    only; [] when the file is not an ISO media file (its first box is not ``ftyp``)."""
    out, size = [], os.path.getsize(path)
    with open(path, "rb") as f:
        i = 0
        while i + 8 <= size:
            f.seek(i)
            kind, header, length = box_header(f.read(16), i, size)
            if not out and kind != "ftyp":
                return []
            out.append((kind, i + header, i + length))
            i += length
    return out


def find(data: bytes, start: int, end: int, *path: str) -> tuple[int, int] | None:
    """(payload start, end) of the first box at ``path`` (e.g. "mdia", "hdlr") under data[start:end]."""
    for kind, s, e in boxes(data, start, end):
        if kind == path[0]:
            return (s, e) if len(path) == 1 else find(data, s, e, *path[1:])
    return None


def sample_ends(data: bytes, stbl: tuple[int, int]) -> list[int]:
    """The byte offset just past each sample (decoding order) of a track's sample table."""

    def table(name):
        box = find(data, *stbl, name)
        return None if box is None else data[box[0] : box[1]]

    stsz, stsc = table("stsz"), table("stsc")
    co64 = table("co64")
    offsets_box, width = (co64, "Q") if co64 is not None else (table("stco"), "I")
    if stsz is None or stsc is None or offsets_box is None:
        return []
    fixed, count = struct.unpack(">II", stsz[4:12])
    sizes = [fixed] * count if fixed else list(struct.unpack(f">{count}I", stsz[12 : 12 + 4 * count]))
    (n_runs,) = struct.unpack(">I", stsc[4:8])
    runs = [struct.unpack(">III", stsc[8 + 12 * k : 20 + 12 * k])[:2] for k in range(n_runs)]
    (n_chunks,) = struct.unpack(">I", offsets_box[4:8])
    offsets = struct.unpack(f">{n_chunks}{width}", offsets_box[8 : 8 + struct.calcsize(width) * n_chunks])
    ends, sample = [], 0
    for chunk, offset in enumerate(offsets, start=1):
        per_chunk = next((n for first, n in reversed(runs) if first <= chunk), 0)
        for _ in range(per_chunk):
            if sample == len(sizes):
                return ends
            offset += sizes[sample]
            ends.append(offset)
            sample += 1
    return ends


def video_frame_ends(path) -> list[int]:
    """Byte end of each frame of the file's first video track, in decoding order ([] when the
    file is not an ISO media file or has no readable index)."""
    moov = next((b for b in top_level(path) if b[0] == "moov"), None)
    if moov is None or moov[2] > os.path.getsize(path):
        return []
    with open(path, "rb") as f:
        f.seek(moov[1])
        data = f.read(moov[2] - moov[1])
    for kind, s, e in boxes(data):
        hdlr = find(data, s, e, "mdia", "hdlr") if kind == "trak" else None
        if hdlr is not None and data[hdlr[0] + 8 : hdlr[0] + 12] == b"vide":
            stbl = find(data, s, e, "mdia", "minf", "stbl")
            return sample_ends(data, stbl) if stbl else []
    return []
