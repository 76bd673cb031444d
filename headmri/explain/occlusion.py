"""Region occlusion: the ``occlusion`` explanation method, model-agnostic and scored in atlas space.

For every atlas region of a patient's parcellation, the region is replaced in every slice by a neutral
image and the drop in the patient's target-class probability is recorded:

    value(region) = p(target | slices) - p(target | slices with the region replaced)

where p is the subject-level probability the evaluation uses: the mean over the subject's slices of the
softmax probability of the target class. Each region gets one number directly, so there is no map
statistic (max or mean) and no bias towards large regions from taking a maximum over more voxels.

**Score** (``score``). ``probability``: p as above. ``log_odds``: the mean over slices of the target's
log-odds, log p_t - log(1 - p_t) from the logits (log-softmax, no rounding to 0 or 1). A model that is
sure of a patient from two regions at once keeps p near 1 when either is occluded, so under
``probability`` both get almost nothing (saturation); the log-odds drop by the evidence each region
carried. The same forward passes either way.

**Mode** (``mode``). ``delete`` (the default): the drop above, what the region's removal costs the decision
(its necessity). ``insert``: the rise from the neutral image when only the region is the patient's,

    value(region) = p(target | neutral with the region from the slices) - p(target | neutral)

(its sufficiency, the "preservation" side of Fong and Vedaldi 2017). A model that finds a patient from two
regions at once needs neither (deleting one leaves the other), but each alone moves the neutral image; the
same forward passes as ``delete``, with the roles of the slices and the neutral image swapped.

**Neutral image.** The mean slice of the fold's *training* controls (reference-class subjects with
``split == train`` in that fold) at the same slice position (the same index along the slicing axis of
the MNI grid); a control whose slice at that position was dropped (too little brain) counts as an empty
slice there, so the neutral stack is the slice cut of the controls' mean image. Validation and test
subjects never enter it.

**Regions in slice space.** The slices were cut from the MNI grid by ``SliceGeometry`` (orient, pad to a
square, resize). Each region's indicator is cut exactly the same way, so a region's mask on a slice is
the fraction of each pixel that the region covers (1 inside, between 0 and 1 on its border when the
slices were resized). Occlusion blends: ``x + mask * (neutral - x)``. A slice that holds no voxel of the
region is unchanged, so its probability need not be computed again (``only_slices_with_region``: the
same numbers, fewer forward passes).

**Cost.** One forward pass per (region, slice that holds it), in batches of ``batch_size`` that mix
regions; no gradients. ``slice_step`` k occludes every k-th of a region's slices, each drop weighted by the
slices it stands for (``_sampled``): k times fewer passes for an estimate of the same value
(docs/explanations.md). The 3D map paints every region's value on its voxels of the parcellation.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from headmri.explain.methods import RegionMethod
from headmri.models.placement import for_inference
from headmri.slices.geometry import SliceGeometry, resize_matrix

SCORES = ("probability", "log_odds")  # what the drop is measured on (headmri.config.OCCLUSION_SCORES)
MODES = ("delete", "insert")  # headmri.config.OCCLUSION_MODES


def training_controls(split_rows, reference_class: str) -> list[str]:
    """Participant IDs of one fold's training subjects of the reference class (the rows of one fold)."""
    rows = split_rows[(split_rows["split"] == "train") & (split_rows["group"] == reference_class)]
    return sorted(rows["participant_id"])


class SliceRegions:
    """A subject's parcellation cut into its slices exactly as its image was: per region code, the slices
    that hold it and its coverage mask on them (float32, 0..1)."""

    def __init__(self, geometry: SliceGeometry, labels: np.ndarray, codes: Sequence[int]):
        labels = np.asarray(labels)
        if labels.shape != geometry.source_shape:
            raise ValueError(f"labels {labels.shape} are not on the slices' grid {geometry.source_shape}")
        self.geometry = geometry
        self.codes = [int(c) for c in codes]
        # (n_kept, padded, padded): oriented and padded like the slices, not yet resized
        self.planes = geometry.padded_planes(labels.astype(np.int32, copy=False))
        wanted = set(self.codes)
        self._positions: dict[int, list[int]] = {code: [] for code in self.codes}
        self._boxes: dict[tuple[int, int], tuple[slice, slice]] = {}  # (code, position) -> the region's rows, columns
        for position, plane in enumerate(self.planes):
            for code, box in enumerate(ndimage.find_objects(plane), start=1):
                if box is not None and code in wanted:
                    self._positions[code].append(position)
                    self._boxes[code, position] = box
        self._resize = resize_matrix(self.planes.shape[-1], geometry.size)

    @property
    def n_slices(self) -> int:
        return self.geometry.n_kept

    def positions(self, code: int) -> np.ndarray:
        """Indices (into the subject's kept slices) of the slices that hold some of region ``code``."""
        return np.asarray(self._positions.get(int(code), []), dtype=np.int64)

    def masks(self, code: int, positions: np.ndarray | None = None) -> np.ndarray:
        """The region's coverage (k, S, S) on the slices at ``positions`` (default: those that hold it)."""
        positions = self.positions(code) if positions is None else np.asarray(positions, dtype=np.int64)
        size = self.geometry.size
        out = np.zeros((len(positions), size, size), np.float32)
        # resize_stack of the region's indicator, computed on the region's bounding box only: the resize is
        # linear and separable (out = R x R^T with R = resize_matrix), so the rest of the plane, all zeros,
        # adds nothing. 5-10x faster than resizing whole planes, which was a sixth of an explain job's time.
        for i, position in enumerate(positions.tolist()):
            box = self._boxes.get((int(code), position))
            if box is None:  # the region is not on this slice
                continue
            rows, cols = box
            inside = (self.planes[position, rows, cols] == int(code)).astype(np.float32)
            out[i] = self._resize[:, rows] @ inside @ self._resize[:, cols].T
        return np.clip(out, 0.0, 1.0)


def paint_regions(labels: np.ndarray, values: Mapping[int, float]) -> np.ndarray:
    """A float32 volume with each region's value on its voxels, 0 elsewhere."""
    labels = np.asarray(labels).astype(np.int64, copy=False)
    table = np.zeros(int(max([labels.max(initial=0), *values])) + 1, dtype=np.float32)
    for code, value in values.items():
        table[int(code)] = np.float32(value) if np.isfinite(value) else 0.0
    return table[labels]


class RegionOcclusion(RegionMethod):
    """Replace one atlas region at a time by the training controls' mean slices and record the drop in the
    subject-level target probability (or mean log-odds: ``score``). Works for any slice classifier that returns logits."""

    name = "occlusion"
    class_specific = True
    needs_reference = True

    def __init__(self, model: torch.nn.Module, *, batch_size: int = 128, target_layer: str | None = None,
                 only_slices_with_region: bool = True, score: str = "probability", mode: str = "delete",
                 slice_step: int = 1, **options: Any):
        super().__init__(model, batch_size=batch_size, target_layer=target_layer, **options)
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if int(slice_step) < 1:
            raise ValueError(f"slice_step must be 1 or more, got {slice_step!r}")
        self.only_slices_with_region = bool(only_slices_with_region)
        self.slice_step = int(slice_step)
        self.score = score
        self.mode = mode
        self.forward_passes = 0  # slices put through the model by the last region_values call
        self._network = model  # what _scores runs: for_inference(model), taken anew by each _drops call

    def _scores(self, images: torch.Tensor, target: int) -> torch.Tensor:
        """Each slice's score: the target's probability, or its log-odds (``score``), by ``self._network``
        (the model for inference, set by ``_drops``)."""
        logits = self._network(images.to(self.device, torch.float32)).float()
        if self.score == "probability":
            return torch.softmax(logits, dim=1)[:, target].double().cpu()
        log_p = torch.log_softmax(logits.double(), dim=1)
        others = torch.cat([log_p[:, :target], log_p[:, target + 1:]], dim=1)
        return (log_p[:, target] - torch.logsumexp(others, dim=1)).cpu()

    def region_values(self, slices, target: int, regions: SliceRegions, reference: np.ndarray) -> dict[int, float]:
        """Each region's value (module docstring): the drop when it is replaced by ``reference``, or with
        ``mode: insert`` the rise when ``reference`` gets the region from ``slices``."""
        slices = torch.as_tensor(np.asarray(slices) if not isinstance(slices, torch.Tensor) else slices).float().cpu()
        n = len(slices)
        if slices.ndim != 4 or slices.shape[1] != 1:
            raise ValueError(f"slices must be (n, 1, S, S) grey images, got {tuple(slices.shape)}")
        if n != regions.n_slices:
            raise ValueError(f"{n} slices but the regions were cut for {regions.n_slices}")
        reference = torch.as_tensor(np.asarray(reference, dtype=np.float32))
        if tuple(reference.shape) != (n, *slices.shape[-2:]):
            raise ValueError(f"the neutral image must be one slice per slice, {(n, *slices.shape[-2:])}, got "
                             f"{tuple(reference.shape)}")
        if self.mode == "delete":
            return self._drops(slices, target, regions, reference)
        # "neutral with the region from the slices" is "the slices with the region replaced" with the two swapped
        drops = self._drops(reference[:, None], target, regions, slices[:, 0])
        return {code: -value for code, value in drops.items()}

    def _drops(self, slices: torch.Tensor, target: int, regions: SliceRegions, reference: torch.Tensor) -> dict[int, float]:
        """The drop of the subject's score per region when ``reference`` (n, S, S) replaces it in ``slices``
        (n, 1, S, S), both checked by ``region_values``."""
        n = len(slices)
        target = int(target)
        was_training = self.model.training
        self.model.eval()
        self._network = for_inference(self.model)  # taken per call: the randomisation test changes the weights
        self.forward_passes = 0
        try:
            with torch.no_grad():
                base = torch.cat([self._scores(slices[i:i + self.batch_size], target)
                                  for i in range(0, n, self.batch_size)]) if n else torch.zeros(0, dtype=torch.float64)
                self.forward_passes += n
                plan = {code: self._sampled(regions, code) for code in regions.codes}
                occluded_sum = {code: 0.0 for code in regions.codes}
                original_sum = {code: 0.0 for code in regions.codes}
                for owners, probabilities in self._batches(slices, reference, regions, plan, base, original_sum, target):
                    self.forward_passes += len(owners)
                    for code, p in zip(owners, probabilities.tolist()):
                        occluded_sum[code] += p * plan[code][1]
        finally:
            self.model.train(was_training)
        return {code: (original_sum[code] - occluded_sum[code]) / n if n else float("nan") for code in regions.codes}

    def _sampled(self, regions: SliceRegions, code: int) -> tuple[np.ndarray, float]:
        """The positions occluded for region ``code`` and the weight of each one's drop: the slices that hold
        it (every slice without ``only_slices_with_region``), and with ``slice_step`` k every k-th of them,
        centred, weighted by how many each stands for (a region on one slice keeps it). Slices of the MNI grid lie
        1 mm apart, finer than the demo's 3.4 mm pixels, so neighbours are nearly the same image."""
        positions = regions.positions(code) if self.only_slices_with_region else np.arange(regions.n_slices)
        if self.slice_step == 1 or len(positions) == 0:
            return positions, 1.0
        sampled = positions[((len(positions) - 1) % self.slice_step) // 2::self.slice_step]
        return sampled, len(positions) / len(sampled)

    def _occluded(self, slices, reference, regions: SliceRegions,
                  plan: Mapping[int, tuple[np.ndarray, float]]) -> Iterator[tuple[int, torch.Tensor, np.ndarray]]:
        """(region code, occluded slices (k, 1, S, S), their positions) per region and run of slices, at the
        positions of ``plan`` (``_sampled``)."""
        for code in regions.codes:
            positions = plan[code][0]
            for start in range(0, len(positions), self.batch_size):  # bounded memory for large regions
                part = positions[start:start + self.batch_size]
                mask = torch.from_numpy(regions.masks(code, part))[:, None]
                index = torch.from_numpy(part)
                original = slices[index]
                yield code, original + mask * (reference[index][:, None] - original), part

    def _batches(self, slices, reference, regions, plan, base, original_sum, target: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Occluded slices of consecutive regions packed into batches of ``batch_size``, run through the model;
        ``original_sum`` gets each region's unoccluded scores at the same positions, with the same weight."""
        pending: list[torch.Tensor] = []
        owners: list[int] = []
        for code, images, positions in self._occluded(slices, reference, regions, plan):
            original_sum[code] += float(base[torch.from_numpy(positions)].sum()) * plan[code][1]
            pending.append(images)
            owners.extend([code] * len(images))
            while len(owners) >= self.batch_size:
                stacked = torch.cat(pending)
                batch, rest = stacked[:self.batch_size], stacked[self.batch_size:]
                yield owners[:self.batch_size], self._scores(batch, target)
                pending, owners = ([rest] if len(rest) else []), owners[self.batch_size:]
        if owners:
            yield owners, self._scores(torch.cat(pending), target)
