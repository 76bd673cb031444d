"""Fast batches of grey slices from the per-subject slice arrays, without a DataLoader.

Why not ``torch.utils.data.DataLoader`` over per-slice items: collating thousands of small tensors per
second costs more Python work than the data itself (ClinicaDL reads one ``.pt`` file per slice). Here the
arrays stay memory-mapped uint8. A batch is one grey channel in 0..1: the encoder's per-channel
normalisation is folded into its patch embedding (headmri/models/grey_input.py), so nobody writes three
normalised float32 copies of each slice. On the CPU the loader's threads each read their share of a
batch's slices straight from the maps and write them as float32 into a reused array; for a GPU the batch
is gathered as uint8 (one fancy-index read per subject present) straight into pinned (page-locked) host
memory, only that crosses the bus, asynchronously, and the device converts it. On a GPU a background
thread prepares the next batches (``prefetch``) while the device works on the current one, so the
training step never waits for the disk or the gather.
"""

from __future__ import annotations

import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from headmri.errors import InputError


class _ReusedBuffers:
    """Output arrays handed out again once nobody holds them any more.

    Why: a float32 batch is megabytes (64 x 224 x 224 is 12.8 MB), which glibc's malloc may serve with a
    fresh mmap and return with munmap, so a batch pays a page fault (and the kernel's zeroing) per 4 KiB
    before a single value is written: filling fresh arrays ran at half the speed of refilling one
    (2026-11-22, docs/benchmarks.md). An array is free when the pool holds the only reference: a tensor made with
    ``torch.from_numpy`` (and every view of it) keeps a reference to the array it wraps, so a batch the
    caller still holds, or any slice of it, is never overwritten.
    """

    def __init__(self, keep: int = 4):
        self.keep = keep
        self._arrays: list[np.ndarray] = [np.empty(0)]
        # What "held by the pool only" reads as, measured on a probe through the same code path
        # (CPython versions count borrowed references differently).
        self._free_count = self._reference_counts()[0]
        self._arrays.clear()

    def _reference_counts(self) -> list[int]:
        return [sys.getrefcount(array) for array in self._arrays]

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        for array, count in zip(self._arrays, self._reference_counts()):
            if count == self._free_count and array.dtype == dtype and array.shape[1:] == tuple(shape[1:]) \
                    and array.shape[0] >= shape[0]:
                return array[:shape[0]]
        array = np.empty(shape, dtype=dtype)
        if len(self._arrays) < self.keep:
            self._arrays.append(array)
        return array


class SliceBatchLoader:
    """Iterate over (x float32 (B, 1, S, S) grey in 0..1, y int64 (B,), subject_index int64 (B,)) batches.

    ``npy_paths[i]`` holds subject i's slices (n_i, S, S) as uint8 (0..255 = 0..1) or float16 (0..1);
    ``labels[i]`` is its class index. With ``shuffle`` the order is a fresh permutation per
    epoch drawn from ``seed`` and the epoch number (``set_epoch``; each full iteration advances it), so
    runs are reproducible and resumable. ``max_slices_per_subject`` draws at most that many slices of each
    subject per epoch (a random subset when shuffling, evenly spaced otherwise).
    ``with_slice_index=True`` adds a fourth tensor: the slice's position in its subject's array.
    ``threads`` (default: torch's intra-op thread count) split the CPU conversion of a batch.
    ``prefetch``: batches a background thread prepares ahead (default: 2 on an accelerator, where the
    host work overlaps the device's; 0 on the CPU, where the same cores would do both). The batches are
    the same either way.
    ``reference`` (``headmri.slices.reference.BatchReference``, one entry per path): each batch becomes the
    slices' differences from the fold's training controls (``training.reference: controls``).
    """

    def __init__(
        self,
        npy_paths: Sequence[str | Path],
        labels: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int,
        max_slices_per_subject: int | None = None,
        *,
        drop_last: bool = False,
        device: str | torch.device | None = None,
        with_slice_index: bool = False,
        threads: int | None = None,
        prefetch: int | None = None,
        reference=None,
    ):
        if len(npy_paths) != len(labels):
            raise ValueError(f"{len(npy_paths)} slice arrays but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.paths = [Path(p) for p in npy_paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.arrays = [self._open(p) for p in self.paths]
        self.slice_shape = self._one_value("slice size", [a.shape[1:] for a in self.arrays]) or (0, 0)
        self.counts = np.array([a.shape[0] for a in self.arrays], dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.max_slices_per_subject = max_slices_per_subject
        self.drop_last = drop_last
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.with_slice_index = with_slice_index
        self.epoch = 0
        # A mix of uint8 and float16 arrays would need a per-subject scale; the cache writes one dtype.
        self._uint8 = self._one_value("dtype", [a.dtype for a in self.arrays]) != np.dtype(np.float16)
        self._scale = np.float32(1.0 / 255.0) if self._uint8 else None
        self.threads = max(1, int(threads if threads is not None else torch.get_num_threads()))
        self.prefetch = int(prefetch if prefetch is not None else (0 if self.device.type == "cpu" else 2))
        self._pool: ThreadPoolExecutor | None = None
        self._outputs = _ReusedBuffers()
        self.reference = reference

    def _one_value(self, what: str, values: list):
        """The value all slice arrays share (None for no arrays); else an error naming one file per value."""
        example = dict(zip(map(str, values), self.paths))  # one file per distinct value
        if len(example) > 1:
            listed = "; ".join(f"{value} in {path}" for value, path in example.items())
            raise InputError(f"slice arrays differ in {what} ({listed}); rebuild them with one {what}")
        return values[0] if values else None

    @staticmethod
    def _open(path: Path) -> np.ndarray:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError as exc:
            raise InputError("the slice array does not exist", path=path) from exc
        except ValueError as exc:
            raise InputError(f"not a readable .npy slice array ({exc})", path=path) from exc
        if array.ndim != 3 or array.shape[1] != array.shape[2] or array.dtype not in (np.uint8, np.float16):
            raise InputError(f"expected an (n, S, S) uint8 or float16 array, found {array.shape} {array.dtype}",
                             path=path)
        # A plain ndarray view of the memory map: indexing an np.memmap builds a subclass instance each
        # time, which costs more than reading a small slice.
        return np.asarray(array)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _epoch_items(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(subject index, slice index) of every item of one epoch, in iteration order."""
        rng = np.random.default_rng([self.seed, epoch])
        subjects, slices = [], []
        for i, n in enumerate(self.counts):
            idx = np.arange(n)
            cap = self.max_slices_per_subject
            if cap is not None and n > cap:
                idx = np.sort(rng.choice(n, cap, replace=False)) if self.shuffle else np.linspace(0, n - 1, cap).round().astype(np.int64)
            subjects.append(np.full(idx.size, i, dtype=np.int64))
            slices.append(idx.astype(np.int64))
        subject = np.concatenate(subjects) if subjects else np.zeros(0, np.int64)
        slice_ = np.concatenate(slices) if slices else np.zeros(0, np.int64)
        if self.shuffle:
            order = rng.permutation(subject.size)
            subject, slice_ = subject[order], slice_[order]
        return subject, slice_

    def __len__(self) -> int:
        total = int(sum(min(n, self.max_slices_per_subject) if self.max_slices_per_subject else n for n in self.counts))
        return total // self.batch_size if self.drop_last else -(-total // self.batch_size)

    @property
    def n_items(self) -> int:
        return int(sum(min(n, self.max_slices_per_subject) if self.max_slices_per_subject else n for n in self.counts))

    def _gather(self, subject: np.ndarray, slice_: np.ndarray) -> torch.Tensor:
        """Read the batch's slices as stored (B, S, S), one fancy-index read per subject present (sorted
        for locality), into pinned memory when the device is CUDA (an asynchronous copy needs it)."""
        dtype = torch.uint8 if self._uint8 else torch.float16
        out = torch.empty((subject.size, *self.slice_shape), dtype=dtype, pin_memory=self.device.type == "cuda")
        view = out.numpy()
        order = np.lexsort((slice_, subject))
        sorted_subjects = subject[order]
        bounds = np.flatnonzero(np.diff(sorted_subjects)) + 1
        for group in np.split(order, bounds):
            view[group] = self.arrays[subject[group[0]]][slice_[group]]
        return out

    def to_grey(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, S, S) uint8/float16 as read from the arrays -> (B, 1, S, S) float32 in 0..1, on ``self.device``."""
        if self.device.type == "cpu":
            stack = raw.numpy()
            return torch.from_numpy(self._grey_numpy(stack.shape, stack.__getitem__))
        grey = raw.to(self.device, non_blocking=True)[:, None].to(torch.float32)
        return grey.mul_(float(self._scale)) if self._uint8 else grey

    def _read_grey(self, subject: np.ndarray, slice_: np.ndarray) -> torch.Tensor:
        """The CPU batch straight from the memory maps: each thread reads and converts its own slices,
        so reading is parallel too and no intermediate uint8 batch is written."""
        arrays = self.arrays
        return torch.from_numpy(self._grey_numpy((subject.size, *self.slice_shape),
                                                 lambda i: arrays[subject[i]][slice_[i]]))

    def _grey_numpy(self, shape: tuple[int, ...], item: Callable[[int], np.ndarray]) -> np.ndarray:
        """(n, 1, S, S) float32 from ``item(0) .. item(n - 1)``, each an (S, S) uint8 or float16 slice,
        for a stack of ``shape`` (n, S, S)."""
        n = shape[0]
        out = self._outputs.get((n, 1, *shape[1:]), np.dtype(np.float32))
        # numpy's ufuncs release the GIL, so slices split over threads convert in parallel (the 2-core
        # machine: docs/benchmarks.md), where one thread cannot saturate the memory bus.
        workers = min(self.threads, n)
        if workers <= 1:
            self._grey_range(item, out, 0, n)
            return out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="slice-grey")
        bounds = np.linspace(0, n, workers + 1).astype(int)
        for done in [self._pool.submit(self._grey_range, item, out, a, b) for a, b in zip(bounds[:-1], bounds[1:])]:
            done.result()
        return out

    def _grey_range(self, item: Callable[[int], np.ndarray], out: np.ndarray, start: int, stop: int) -> None:
        # Memory-bound. Per slice a cast into the output, then an in-place scale of that block while it
        # is still in cache: 1.6x a mixed uint8 x float32 multiply, which casts in small buffered chunks
        # (2026-11-22, 2 cores).
        for i in range(start, stop):
            block = out[i, 0]
            np.copyto(block, item(i), casting="unsafe")
            if self._uint8:
                block *= self._scale

    def _host_batches(self, subject: np.ndarray, slice_: np.ndarray) -> Iterator[tuple]:
        """(subject, slice, x, y) per batch, prepared on the host: x float32 grey on the CPU, x as stored
        (and y) in pinned memory for an accelerator."""
        pin = self.device.type == "cuda"
        for start in range(0, subject.size, self.batch_size):
            stop = min(start + self.batch_size, subject.size)
            if self.drop_last and stop - start < self.batch_size:
                break
            s, k = subject[start:stop], slice_[start:stop]
            y = torch.from_numpy(self.labels[s])
            if self.device.type == "cpu":
                yield s, k, self._read_grey(s, k), y
            else:
                yield s, k, self._gather(s, k), (y.pin_memory() if pin else y)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        epoch = self.epoch
        self.epoch += 1
        host = self._host_batches(*self._epoch_items(epoch))
        for s, k, x, y in (prefetched(host, self.prefetch) if self.prefetch else host):
            if self.device.type != "cpu":  # only the stored values cross the bus; the device converts
                x = self.to_grey(x)
                y = y.to(self.device, non_blocking=True)
            if self.reference is not None:
                x = self.reference.apply(x, s, k)
            batch = (x, y, torch.from_numpy(s.copy()))
            yield batch + (torch.from_numpy(k.copy()),) if self.with_slice_index else batch
            del x, batch  # so this generator does not keep the batch's buffer from being reused


_DONE = object()


def prefetched(items: Iterable, depth: int) -> Iterator:
    """The items of ``items``, produced by a background thread up to ``depth`` ahead of the consumer.
    An exception in the producer is raised in the consumer; a consumer that stops early stops it."""
    ahead: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as error:  # handed to the consumer, which raises it
            put((_DONE, error))

    worker = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = ahead.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
            del item
    finally:
        stop.set()
        worker.join()
