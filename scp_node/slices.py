"""The slices of a series, decoded when first asked for, several at a time, and let go after use.

A :class:`SliceStack` knows its slices from the headers alone (:class:`~scp_node.multiframe.
ImageFrame`, sorted by the series loader). ``stack.load([k, ...])`` reads and decodes the
instances holding those slices in a thread pool (the JPEG 2000 / JPEG-LS / JPEG decoders and file
reads release the GIL, so two cores decode two slices at once) and keeps the rescaled float32
images until :meth:`SliceStack.release`. The model asks only for the slices it uses, so a
200-slice series costs a handful of decoded slices, not 200.

Each instance file is read once per :meth:`SliceStack.load`, whatever number of its frames are
asked for; rescale (PS3.3 C.11.1.1.2 or the Pixel Value Transformation macro, C.7.6.16.2.9) and
MONOCHROME1 inversion (C.7.6.3.1.2) are applied as the eager loader always did.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from scp_node.multiframe import ImageFrame, frame_pixels, is_multiframe, rescale


class SliceDecodeError(Exception):
    """Slice ``index`` of a stack cannot be decoded; ``message`` says why, as a warning would."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def named(frame: ImageFrame) -> str:
    """``slice IM0003.dcm`` or ``frame 3 of MF0001.dcm`` (how warnings name an image)."""
    return f"slice {frame.label}" if frame.frame_number is None else frame.label


def rescaled(ds: Dataset, stored: np.ndarray, frame_number: int | None = None) -> np.ndarray:
    """Stored values -> modality values (float32); MONOCHROME1 inverted."""
    slope, intercept = rescale(ds, None if frame_number is None else frame_number - 1)
    img = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        img = img.max() + img.min() - img
    return img


def decode_frames(path: Path, frames: Sequence[ImageFrame]) -> list[np.ndarray | str]:
    """Read and decode one instance once; per frame asked for, its rescaled float32 image or
    the warning saying why it is dropped. Never raises."""
    from scp_node.codecs import decode_pixels

    try:
        ds = dcmread(path)
        stored = np.asarray(decode_pixels(ds))
        del ds.PixelData  # the float copies below are all that is kept
    except Exception as exc:  # noqa: BLE001 - a bad file is dropped, never raised
        what = "slice" if frames[0].frame_number is None else "instance"
        message = f"{what} {path.name} dropped: {type(exc).__name__}: {exc}"[:300]
        return [message] * len(frames)
    multi = is_multiframe(ds)
    out: list[np.ndarray | str] = []
    for frame in frames:
        try:
            if multi:
                pixels = frame_pixels(ds, stored, frame.frame_number)
            elif stored.ndim != 2:
                raise ValueError(f"expected one frame, got shape {stored.shape}")
            else:
                pixels = stored
            if pixels.ndim != 2:
                raise ValueError(f"expected a 2D frame, got shape {pixels.shape}")
            out.append(rescaled(ds, pixels, frame.frame_number))
        except Exception as exc:  # noqa: BLE001 - a bad frame is dropped, never raised
            out.append(f"{named(frame)} dropped: {type(exc).__name__}: {exc}"[:300])
    return out


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def decode_pool(threads: int = 0) -> ThreadPoolExecutor:
    """The process's decode threads (``threads`` 0 = one per CPU), kept warm between studies."""
    size = threads if threads > 0 else max(1, os.cpu_count() or 1)
    with _pools_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(size, thread_name_prefix="decode")
        return pool


class SliceStack:
    """``stack[k]``: slice ``k`` of a sorted series, decoded on first use (float32, rescaled).

    Array-like where the model code needs it: ``shape``, ``ndim``, ``len``; ``np.asarray(stack)``
    decodes every slice (the eager view; the analysis never does that).
    """

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, frames: Sequence[ImageFrame], shape: tuple[int, int], threads: int = 0):
        self.frames = list(frames)
        self.shape = (len(self.frames), int(shape[0]), int(shape[1]))
        self.threads = threads
        self._cache: dict[int, np.ndarray] = {}
        #: every slice index decoded so far, in order (a slice released and asked again twice)
        self.decoded: list[int] = []
        #: slice index -> why it could not be used (the warning)
        self.failed: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def load(self, indices: Iterable[int]) -> list[np.ndarray]:
        """The images of ``indices`` (decoded now where not yet), in that order.

        Raises :class:`SliceDecodeError` for the lowest index that cannot be decoded or whose
        size is not the series' size."""
        wanted = [int(k) for k in indices]
        for _ in self.load_each(wanted):
            pass
        return [self._cache[k] for k in wanted]

    def load_each(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, image)`` of each of ``indices`` as soon as it is decoded (cached ones first),
        so that the caller can work on one while the others decode. Raises
        :class:`SliceDecodeError` at the end for the lowest index that failed."""
        wanted = list(dict.fromkeys(int(k) for k in indices))
        for k in wanted:
            if k in self._cache:
                yield k, self._cache[k]
        by_path: dict[Path, list[int]] = defaultdict(list)
        for k in wanted:
            if k not in self._cache:
                by_path[self.frames[k].path].append(k)
        if not by_path:
            return
        jobs = list(by_path.items())
        failed: dict[int, str] = {}
        if len(jobs) == 1:
            done: Iterable[tuple[list[int], list[np.ndarray | str]]] = [
                (jobs[0][1], decode_frames(jobs[0][0], [self.frames[k] for k in jobs[0][1]]))
            ]
        else:
            pool = decode_pool(self.threads)
            futures = {
                pool.submit(decode_frames, path, [self.frames[k] for k in ks]): ks
                for path, ks in jobs
            }
            done = ((futures[f], f.result()) for f in as_completed(futures))
        for ks, images in done:
            for k, img in zip(ks, images, strict=True):
                if isinstance(img, str):
                    failed[k] = img
                elif img.shape != self.shape[1:]:
                    failed[k] = (
                        f"{named(self.frames[k])} dropped: size {img.shape} differs from "
                        f"{self.shape[1:]}"
                    )
                else:
                    self._cache[k] = img
                    self.decoded.append(k)
                    yield k, img
        if failed:
            self.failed.update(failed)
            first = min(failed)
            raise SliceDecodeError(first, failed[first])

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            k = int(key) + (len(self) if int(key) < 0 else 0)
            return self.load([k])[0]
        if isinstance(key, slice):
            return np.stack(self.load(range(*key.indices(len(self)))))
        return np.stack(self.load(list(key)))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        volume = np.stack(self.load(range(len(self))))
        return volume if dtype is None else volume.astype(dtype)

    def release(self, keep: Iterable[int] = ()) -> None:
        """Let go of every decoded slice except ``keep``."""
        kept = set(keep)
        self._cache = {k: v for k, v in self._cache.items() if k in kept}
