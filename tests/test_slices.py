"""Slice tensors: orientation, dropped slices, normalisation, no cropping, loader batches, errors."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from headmri import nifti_io
from headmri.errors import InputError
from headmri.slices import SliceGeometry, decode, extract_slices
from headmri.slices.loader import SliceBatchLoader

SHAPE = (40, 48, 40)


def synthetic_brain(tmp_path, affine=None, name="s"):
    """An ellipsoid 'brain' with a smooth intensity gradient and one bright outlier voxel."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    mask = ((i - 19.5) / 16) ** 2 + ((j - 23.5) / 21) ** 2 + ((k - 19.5) / 15) ** 2 <= 1
    brain = np.where(mask, 100 + 2.0 * j + k, 0).astype(np.float32)
    brain[20, 24, 20] = 5000  # outlier: the robust window ignores it
    affine = np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    brain_path, mask_path = tmp_path / f"{name}_brain.nii.gz", tmp_path / f"{name}_mask.nii.gz"
    nib.save(nib.Nifti1Image(brain, affine), brain_path)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), mask_path)
    return brain_path, mask_path, brain, mask


def run(tmp_path, brain_path, mask_path, **kw):
    npy, js = tmp_path / "out" / "sub-x_slices.npy", tmp_path / "out" / "sub-x_slices.json"
    geometry = extract_slices(brain_path, mask_path, npy, js, subject="sub-x", **{"size": 64, **kw})
    return geometry, np.load(npy, mmap_mode="r"), json.loads(js.read_text())


def test_slices_drop_small_brain_slices_and_record_everything(tmp_path):
    brain_path, mask_path, brain, mask = synthetic_brain(tmp_path)
    geometry, slices, meta = run(tmp_path, brain_path, mask_path, min_brain_fraction=0.05)
    fraction = mask.mean(axis=(1, 2))
    assert list(geometry.kept_indices) == list(np.flatnonzero(fraction >= 0.05))
    assert list(geometry.dropped_indices) == list(np.flatnonzero(fraction < 0.05))
    assert 0 < len(geometry.dropped_indices) < SHAPE[0]
    assert slices.shape == (geometry.n_kept, 64, 64) and slices.dtype == np.uint8
    assert meta["parameters"] == {"axis": 0, "size": 64, "min_brain_fraction": 0.05, "percentiles": [0.5, 99.5],
                                  "window": None, "dtype": "uint8", "smooth_fwhm_mm": 0.0}
    assert SliceGeometry.from_json(tmp_path / "out" / "sub-x_slices.json") == geometry
    assert meta["shape"] == list(slices.shape)
    assert not list((tmp_path / "out").glob(".*tmp*"))  # no temporary leftovers


def test_smoothing_blurs_fine_detail_inside_the_brain_without_darkening_its_rim(tmp_path):
    """slices.smooth_fwhm_mm: a 4 mm checkerboard on a uniform brain is mostly gone at 8 mm FWHM, the
    brain's mean is kept, the rim stays as bright as the inside (normalised convolution) and the
    background stays zero; the width is recorded."""
    _, _, _, mask = synthetic_brain(tmp_path)
    i, j, k = np.indices(SHAPE)
    brain = np.where(mask, 100.0 + 20.0 * (-1.0) ** (i + j + k), 0).astype(np.float32)
    brain_path = tmp_path / "checker_brain.nii.gz"
    nib.save(nib.Nifti1Image(brain, np.diag([2.0, 2.0, 2.0, 1.0])), brain_path)
    mask_path = tmp_path / "s_mask.nii.gz"
    _, plain, _ = run(tmp_path / "plain", brain_path, mask_path, size=40, percentiles=(0, 100))
    geometry, smooth, meta = run(tmp_path / "smooth", brain_path, mask_path, size=40, percentiles=(0, 100),
                                 smooth_fwhm_mm=8.0)
    assert meta["parameters"]["smooth_fwhm_mm"] == 8.0
    plain, smooth = decode(np.asarray(plain)), decode(np.asarray(smooth))
    inside = geometry.resize(geometry.padded_planes(mask.astype(np.float32))) >= 0.5
    interior = inside & (np.abs(np.gradient(inside.astype(float))).sum(0) == 0)
    assert smooth[interior].std() < 0.25 * plain[interior].std()
    assert abs(smooth[inside].mean() - plain[inside].mean()) < 0.02
    rim = inside & ~interior
    assert abs(smooth[rim].mean() - smooth[interior].mean()) < 0.05
    assert not smooth[~inside].any()


def test_intensities_are_windowed_by_robust_percentiles_inside_the_mask(tmp_path):
    brain_path, mask_path, brain, mask = synthetic_brain(tmp_path)
    geometry, slices, meta = run(tmp_path, brain_path, mask_path, size=48)
    low, high = np.percentile(brain[mask], [0.5, 99.5])
    assert meta["intensity"]["window"] == pytest.approx([low, high])
    assert high < 1000  # the outlier did not set the window
    volume = geometry.to_volume(decode(np.asarray(slices)))
    inner = mask & (np.abs(np.gradient(mask.astype(float))).sum(0) == 0)  # away from the edge
    expected = np.clip((brain - low) / (high - low), 0, 1)
    kept = np.zeros(SHAPE, bool)
    kept[list(geometry.kept_indices)] = True
    assert np.abs(volume - expected)[inner & kept].mean() < 0.02
    assert volume[~mask].max() < 0.6  # zero outside the mask, bar interpolation at the edge
    assert decode(np.asarray(slices)).max() == 1.0


def test_a_fixed_window_keeps_a_focal_bright_region_from_darkening_the_rest(tmp_path):
    """Two subjects alike but for one bright block: with each one's percentiles the block raises the upper
    bound and every other voxel turns darker; with a fixed window the rest of the brain is the same."""
    brain_path, mask_path, brain, mask = synthetic_brain(tmp_path, name="plain")
    bright = brain.copy()
    bright[8:20, 10:30, 10:30] *= np.where(mask[8:20, 10:30, 10:30], 3.0, 1.0)
    nib.save(nib.Nifti1Image(bright, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "bright_brain.nii.gz")
    rest = mask.copy()
    rest[6:22, 8:32, 8:32] = False  # away from the block and its interpolated border

    def volume(path, **kw):
        geometry, slices, meta = run(tmp_path / f"{path.name}_{bool(kw)}", path, mask_path, size=48, **kw)
        return geometry.to_volume(decode(np.asarray(slices))), meta

    (plain_pct, _), (bright_pct, _) = volume(brain_path), volume(tmp_path / "bright_brain.nii.gz")
    assert (bright_pct[rest] - plain_pct[rest]).mean() < -0.2  # per-subject window: the rest darkens
    (plain, meta), (bright_fixed, _) = (volume(p, window=(0.0, 600.0)) for p in (brain_path, tmp_path / "bright_brain.nii.gz"))
    assert meta["intensity"]["window"] == [0.0, 600.0] and meta["parameters"]["window"] == [0.0, 600.0]
    assert meta["parameters"]["percentiles"] is None
    assert np.abs(bright_fixed[rest] - plain[rest]).max() < 1e-6
    assert (bright_fixed[8:20, 10:30, 10:30] > plain[8:20, 10:30, 10:30] + 0.1)[mask[8:20, 10:30, 10:30]].mean() > 0.5


def test_a_fixed_window_that_clips_most_of_the_brain_is_refused(tmp_path):
    brain_path, mask_path, _, _ = synthetic_brain(tmp_path)
    with pytest.raises(InputError, match=r"sub-x.*s_brain.nii.gz.*outside the source's fixed window \[0, 3\]"):
        run(tmp_path, brain_path, mask_path, window=(0.0, 3.0))
    assert not (tmp_path / "out" / "sub-x_slices.npy").exists()


def test_no_brain_is_cropped_even_when_it_fills_the_long_axis(tmp_path):
    box = np.zeros(SHAPE, np.uint8)
    box[5:35, :, 2:38] = 1  # touches both ends of axis 1 (the long in-plane axis of sagittal slices)
    brain = box * (100.0 + np.arange(SHAPE[2])[None, None, :])
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(brain.astype(np.float32), affine), tmp_path / "b.nii.gz")
    nib.save(nib.Nifti1Image(box, affine), tmp_path / "m.nii.gz")
    geometry, slices, _ = run(tmp_path, tmp_path / "b.nii.gz", tmp_path / "m.nii.gz", size=96)
    volume = geometry.to_volume(decode(np.asarray(slices)))
    # the first and last voxels along the long axis survive (open_clip's centre crop would cut them)
    assert volume[20, 0, 20] > 0.3 and volume[20, SHAPE[1] - 1, 20] > 0.3
    assert volume[20, 1:-1, 20] == pytest.approx(volume[20, 1, 20], abs=0.02)
    assert slices.shape[1] == slices.shape[2] == 96


def test_non_canonical_input_gives_the_same_slices_as_canonical(tmp_path):
    brain_path, mask_path, brain, mask = synthetic_brain(tmp_path, name="ras")
    flipped = np.diag([-2.0, 2.0, 2.0, 1.0])
    flipped[0, 3] = 2.0 * (SHAPE[0] - 1)  # LAS storage of the same world image
    nib.save(nib.Nifti1Image(brain[::-1].copy(), flipped), tmp_path / "las_brain.nii.gz")
    nib.save(nib.Nifti1Image(mask[::-1].astype(np.uint8), flipped), tmp_path / "las_mask.nii.gz")
    g1, s1, _ = run(tmp_path, brain_path, mask_path)
    s1 = np.array(s1)
    g2, s2, _ = run(tmp_path, tmp_path / "las_brain.nii.gz", tmp_path / "las_mask.nii.gz")
    assert np.array_equal(s1, s2) and g1.kept_indices == g2.kept_indices
    assert np.allclose(g1.affine, g2.affine)


@pytest.mark.parametrize("axis", [0, 2])
def test_slices_do_not_depend_on_storage_order_or_on_how_the_brain_inflates(tmp_path, monkeypatch, axis):
    """The brain is cut band by band while it inflates (voxel axis 2 as stored, which may be any canonical
    axis, reversed or not): every storage order and chunk size must give the slices of the RAS file."""
    brain_path, mask_path, brain, mask = synthetic_brain(tmp_path, name="ras")
    expected = np.array(run(tmp_path, brain_path, mask_path, axis=axis)[1])
    ras = nib.load(brain_path)
    monkeypatch.setattr(nifti_io, "CHUNK_BYTES", 3000)  # bands of one or two planes
    for codes in [("R", "A", "S"), ("L", "A", "S"), ("R", "A", "I"), ("S", "R", "A"), ("A", "I", "L")]:
        name = "".join(codes)
        transform = nib.orientations.ornt_transform(nib.io_orientation(ras.affine), nib.orientations.axcodes2ornt(codes))
        for image, path in [(ras, tmp_path / f"{name}_brain.nii.gz"), (nib.load(mask_path), tmp_path / f"{name}_mask.nii.gz")]:
            stored = image.as_reoriented(transform)
            assert nib.aff2axcodes(stored.affine) == codes
            nib.save(nib.Nifti1Image(np.asarray(stored.dataobj), stored.affine), path)
        slices = np.array(run(tmp_path, tmp_path / f"{name}_brain.nii.gz", tmp_path / f"{name}_mask.nii.gz", axis=axis)[1])
        assert np.array_equal(slices, expected), name


def test_integer_brains_are_cut_like_their_float_copies(tmp_path, monkeypatch):
    brain_path, mask_path, brain, mask = synthetic_brain(tmp_path)
    expected = np.array(run(tmp_path, brain_path, mask_path)[1])
    nib.save(nib.Nifti1Image(brain.astype(np.int16), nib.load(brain_path).affine), tmp_path / "int_brain.nii.gz")
    monkeypatch.setattr(nifti_io, "CHUNK_BYTES", 3000)
    assert np.array_equal(np.array(run(tmp_path, tmp_path / "int_brain.nii.gz", mask_path)[1]), expected)


def test_masks_of_labels_or_probabilities_select_the_same_brain(tmp_path):
    brain_path, mask_path, brain, mask = synthetic_brain(tmp_path)
    affine = nib.load(mask_path).affine
    expected = np.array(run(tmp_path, brain_path, mask_path)[1])
    # an integer label mask: any non-zero label is brain; a probability mask: brain above 0.5
    nib.save(nib.Nifti1Image(np.where(mask, 17, 0).astype(np.int16), affine), tmp_path / "labels.nii.gz")
    nib.save(nib.Nifti1Image(np.where(mask, 0.9, 0.4).astype(np.float32), affine), tmp_path / "prob.nii.gz")
    for name in ("labels.nii.gz", "prob.nii.gz"):
        assert np.array_equal(np.array(run(tmp_path, brain_path, tmp_path / name)[1]), expected), name


def test_axial_float16_slices(tmp_path):
    brain_path, mask_path, *_ = synthetic_brain(tmp_path)
    geometry, slices, meta = run(tmp_path, brain_path, mask_path, axis=2, dtype="float16")
    assert slices.dtype == np.float16 and geometry.axis == 2 and geometry.plane_shape == (48, 40)
    assert 0.0 <= float(slices.min()) and float(slices.max()) <= 1.0


def test_bad_inputs_name_the_subject_and_the_file(tmp_path):
    brain_path, mask_path, brain, mask = synthetic_brain(tmp_path)
    nib.save(nib.Nifti1Image(mask[:, :, :30].astype(np.uint8), np.eye(4)), tmp_path / "small.nii.gz")
    with pytest.raises(InputError, match=r"subject sub-x, file .*small.nii.gz: the brain mask's shape"):
        run(tmp_path, brain_path, tmp_path / "small.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), np.diag([2.0, 2, 2, 1])), tmp_path / "empty.nii.gz")
    with pytest.raises(InputError, match="the brain mask is empty"):
        run(tmp_path, brain_path, tmp_path / "empty.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.float32) * 7, np.diag([2.0, 2, 2, 1])), tmp_path / "flat.nii.gz")
    with pytest.raises(InputError, match="no intensity contrast"):
        run(tmp_path, tmp_path / "flat.nii.gz", mask_path)
    with pytest.raises(InputError, match="does not exist"):
        run(tmp_path, tmp_path / "missing.nii.gz", mask_path)
    spoilt = brain.copy()
    spoilt[3, 4, 35] = np.nan  # outside the mask, in the last planes to inflate
    nib.save(nib.Nifti1Image(spoilt, np.diag([2.0, 2, 2, 1])), tmp_path / "nan.nii.gz")
    with pytest.raises(InputError, match=r"file .*nan.nii.gz: the brain image holds NaN"):
        run(tmp_path, tmp_path / "nan.nii.gz", mask_path)
    with pytest.raises(InputError, match="no slice along axis 0"):
        run(tmp_path, brain_path, mask_path, min_brain_fraction=0.99)
    (tmp_path / "cut.nii.gz").write_bytes(brain_path.read_bytes()[:-100])
    with pytest.raises(InputError, match=r"subject sub-x, file .*cut.nii.gz: the brain image cannot be read"):
        run(tmp_path, tmp_path / "cut.nii.gz", mask_path)


def make_arrays(tmp_path, counts, size=8):
    paths = []
    for i, n in enumerate(counts):
        array = (np.arange(n * size * size) % 251).astype(np.uint8).reshape(n, size, size)
        array[:, 0, 0] = i  # subject id in the first pixel
        array[:, 0, 1] = np.arange(n)  # slice index in the second
        paths.append(tmp_path / f"s{i}.npy")
        np.save(paths[-1], array)
    return paths


def test_loader_yields_every_slice_once_as_grey_with_its_label(tmp_path):
    paths = make_arrays(tmp_path, [5, 7, 3])
    loader = SliceBatchLoader(paths, [0, 1, 1], batch_size=4, shuffle=True, seed=1, with_slice_index=True, threads=3)
    seen = []
    for x, y, subject, slice_index in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8) and y.dtype == torch.int64
        for b in range(x.shape[0]):
            raw = np.load(paths[subject[b]])[slice_index[b]] / 255.0
            assert np.allclose(x[b, 0].numpy(), raw, atol=1e-6)
            assert y[b] == [0, 1, 1][subject[b]]
            seen.append((int(subject[b]), int(slice_index[b])))
    assert sorted(seen) == [(s, k) for s, n in enumerate([5, 7, 3]) for k in range(n)]
    assert len(loader) == 4


def test_loader_batches_do_not_depend_on_the_thread_count(tmp_path):
    paths = make_arrays(tmp_path, [9, 4])
    def batches(threads):
        loader = SliceBatchLoader(paths, [0, 1], 5, True, 3, threads=threads)
        return [x for x, _, _ in loader]
    one, three = batches(1), batches(3)
    assert len(one) == 3 and all(torch.equal(a, b) for a, b in zip(one, three))


def test_loader_reuses_an_output_buffer_only_once_its_batch_is_released(tmp_path):
    paths = make_arrays(tmp_path, [12, 12])
    def loader():
        return SliceBatchLoader(paths, [0, 1], 4, True, 2, threads=2)
    expected = [x.clone() for x, _, _ in loader()]
    # batches (and views of them) that the caller keeps are never written over by later batches
    kept = [(x, x[1:3, 0, 2]) for x, _, _ in loader()]
    assert len(kept) == 6
    for (x, view), want in zip(kept, expected):
        assert torch.equal(x, want) and torch.equal(view, want[1:3, 0, 2])
    # batches dropped as the loop moves on are recycled: a few pooled buffers serve the whole epoch
    recycling = loader()
    addresses = {x.data_ptr() for x, _, _ in recycling}
    pooled = {a.ctypes.data for a in recycling._outputs._arrays}
    assert len(pooled) <= 3 and addresses <= pooled


def test_loader_epochs_are_reproducible_and_differ(tmp_path):
    paths = make_arrays(tmp_path, [6, 6])
    def order(epoch, **kw):
        loader = SliceBatchLoader(paths, [0, 1], 5, True, 7, with_slice_index=True, **kw)
        loader.set_epoch(epoch)
        return [(int(s), int(k)) for _, _, ss, kk in loader for s, k in zip(ss, kk)]
    assert order(0) == order(0) and order(0) != order(1)
    capped = order(0, max_slices_per_subject=2)
    assert len(capped) == 4 and sorted({s for s, _ in capped}) == [0, 1]
    plain = SliceBatchLoader(paths, [0, 1], 5, False, 7, with_slice_index=True)
    assert [(int(s), int(k)) for _, _, ss, kk in plain for s, k in zip(ss, kk)] == [(s, k) for s in (0, 1) for k in range(6)]


def test_loader_rejects_mismatched_arrays(tmp_path):
    paths = make_arrays(tmp_path, [3]) + make_arrays(tmp_path / "..", [2], size=6)[:1]
    with pytest.raises(InputError, match=r"differ in slice size \(\(8, 8\) in .*s0.npy; \(6, 6\) in .*s0.npy\)"):
        SliceBatchLoader(paths, [0, 1], 2, False, 0)
    with pytest.raises(InputError, match="does not exist"):
        SliceBatchLoader([tmp_path / "nope.npy"], [0], 2, False, 0)


def test_loader_reads_float16_caches_like_uint8_ones(tmp_path):
    values = np.random.default_rng(0).integers(0, 256, (4, 8, 8)).astype(np.uint8)
    np.save(tmp_path / "u8.npy", values)
    np.save(tmp_path / "f16.npy", (values / 255.0).astype(np.float16))
    batches = [next(iter(SliceBatchLoader([tmp_path / name], [1], 4, False, 0)))[0]
               for name in ("u8.npy", "f16.npy")]
    assert torch.allclose(batches[0], batches[1], atol=2e-3)
    with pytest.raises(InputError, match="differ in dtype .uint8 in .*u8.npy; float16 in .*f16.npy"):
        SliceBatchLoader([tmp_path / "u8.npy", tmp_path / "f16.npy"], [0, 1], 4, False, 0)


def test_encode_stores_clipped_rounded_values_in_place_or_not():
    from headmri.slices.extract import decode, encode
    values = np.array([[-0.3, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 1.7]], dtype=np.float32)
    assert encode(values, "uint8").tolist() == [[0, 0, 0, 2, 128, 255, 255]]  # round half to even
    assert np.array_equal(encode(values.copy(), "uint8", inplace=True), encode(values, "uint8"))
    assert values[0, 0] == np.float32(-0.3)  # not in place unless asked
    assert np.allclose(decode(encode(values, "float16")), np.clip(values, 0, 1), atol=1e-3)
    with pytest.raises(ValueError, match="dtype must be one of"):
        encode(values, "int8")


def test_prefetched_batches_are_the_batches(tmp_path):
    paths = make_arrays(tmp_path, [9, 7])

    def batches(prefetch):
        loader = SliceBatchLoader(paths, [0, 1], 4, True, 5, with_slice_index=True, prefetch=prefetch)
        return [tuple(t.clone() for t in batch) for batch in loader]

    plain, ahead = batches(0), batches(3)
    assert len(plain) == 4
    assert all(torch.equal(a, b) for one, other in zip(plain, ahead) for a, b in zip(one, other))


def test_prefetch_raises_the_producers_error_and_stops_with_an_early_consumer():
    import threading

    from headmri.slices.loader import prefetched

    def failing():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(prefetched(failing(), 2))
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    def producers() -> int:  # other tests' threads (a checkpoint writer, a slice pool) may come and go meanwhile
        return sum(thread.name == "batch-prefetch" for thread in threading.enumerate())

    before = producers()
    for item in prefetched(endless(), 2):
        if item == 3:
            break
    assert producers() == before  # the producer thread has ended
    assert len(produced) <= 3 + 1 + 2 + 1  # taken, one being put, the queue, one pending
