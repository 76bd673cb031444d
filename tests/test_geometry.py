"""SliceGeometry: pixels and voxels map both ways, maps go back to the right voxels."""

import numpy as np
import pytest

from headmri.slices.geometry import SliceGeometry

SHAPE = (40, 48, 36)  # non-cubic, so a swapped axis would show


def geometry(axis: int, size: int = 64, kept=None) -> SliceGeometry:
    kept = range(3, SHAPE[axis] - 3) if kept is None else kept
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-20, -24, -18]
    return SliceGeometry.create(axis=axis, size=size, source_shape=SHAPE, source_affine=affine, kept_indices=kept,
                                dropped_indices=[i for i in range(SHAPE[axis]) if i not in kept])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_single_pixel_map_lands_in_the_voxel_pixel_to_voxel_names(axis):
    g = geometry(axis)
    rng = np.random.default_rng(axis)
    checked = 0
    while checked < 25:
        pos, row, col = int(rng.integers(g.n_kept)), int(rng.integers(g.size)), int(rng.integers(g.size))
        voxel = np.array(g.pixel_to_voxel(pos, row, col))
        if not all(0 <= voxel[d] <= SHAPE[d] - 1 for d in range(3)):
            continue  # a padding pixel: outside the volume
        maps = np.zeros((g.n_kept, g.size, g.size), np.float32)
        maps[pos, row, col] = 1.0
        volume = g.to_volume(maps)
        peak = np.unravel_index(np.argmax(volume), SHAPE)
        assert np.abs(np.array(peak) - voxel).max() <= 0.5 + 1e-6, (pos, row, col, voxel, peak)
        assert peak[axis] == g.kept_indices[pos]
        checked += 1


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_bright_voxel_shows_at_the_pixel_voxel_to_pixel_names(axis):
    g = geometry(axis)
    for voxel in [(10, 30, 20), (25, 5, 31), (33, 40, 7)]:
        volume = np.zeros(SHAPE, np.float32)
        volume[voxel] = 1.0
        slice_pos, row, col = g.voxel_to_pixel(*voxel)
        slices = g.slices_from_volume(volume)
        peak = np.unravel_index(np.argmax(slices), slices.shape)
        assert peak[0] == slice_pos
        assert abs(peak[1] - row) <= 0.5 + 1e-6 and abs(peak[2] - col) <= 0.5 + 1e-6
        assert np.allclose(g.pixel_to_voxel(slice_pos, row, col), voxel)


def test_orientation_is_radiological_superior_up_anterior_right_for_sagittal():
    g = geometry(0)
    top_left = g.pixel_to_voxel(0, 0, 0)
    bottom_right = g.pixel_to_voxel(0, g.size - 1, g.size - 1)
    assert top_left[2] > bottom_right[2]  # rows run superior -> inferior
    assert top_left[1] < bottom_right[1]  # columns run posterior -> anterior
    assert np.allclose(g.pixel_to_world(0, 0, 0), np.array(top_left) + [-20, -24, -18])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_smooth_volume_sliced_and_mapped_back_equals_itself(axis):
    g = geometry(axis, size=96)
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in SHAPE], indexing="ij")
    volume = (np.sin(3 * grids[0]) + np.cos(2 * grids[1]) * grids[2]).astype(np.float32)
    back = g.to_volume(g.slices_from_volume(volume))
    kept = [slice(2, -2)] * 3
    kept[axis] = list(g.kept_indices)
    assert np.abs(back - volume)[tuple(kept)].max() < 0.01
    dropped = [slice(None)] * 3
    dropped[axis] = list(g.dropped_indices)
    assert not back[tuple(dropped)].any()  # dropped slices stay zero


def test_maps_of_another_square_size_go_back_too():
    g = geometry(2)
    coarse = np.ones((g.n_kept, 14, 14), np.float32)  # a Grad-CAM grid
    volume = g.to_volume(coarse)
    assert volume.shape == SHAPE
    assert np.allclose(volume[5:-5, 5:-5, list(g.kept_indices)], 1.0, atol=1e-5)


def test_json_round_trip_and_shape_errors(tmp_path):
    import json

    g = geometry(1, kept=[4, 5, 9, 20])
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"geometry": g.to_dict()}))
    again = SliceGeometry.from_json(path)
    assert again == g
    assert again.padded == 40 and again.plane_shape == (36, 40) and again.pad_top == 2 and again.pad_left == 0
    with pytest.raises(ValueError, match=r"maps must have shape \(4, H, H\)"):
        g.to_volume(np.zeros((3, 64, 64)))
    with pytest.raises(ValueError, match="kept_indices"):
        SliceGeometry.create(axis=0, size=8, source_shape=SHAPE, source_affine=np.eye(4), kept_indices=[5, 3])


def test_non_contiguous_kept_slices_are_cut_like_contiguous_ones():
    volume = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    sparse = geometry(0, kept=[4, 5, 9, 20])
    full = geometry(0, kept=range(SHAPE[0]))
    assert np.allclose(sparse.slices_from_volume(volume), full.slices_from_volume(volume)[[4, 5, 9, 20]])
    assert np.array_equal(sparse.plane_images(volume)[2], volume[9].T[::-1])


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("kept", [None, [4, 5, 9, 20, 21]])
def test_planes_filled_band_by_band_along_any_axis_equal_the_whole_cut(axis, kept):
    volume = np.random.default_rng(1).random(SHAPE).astype(np.float32)
    grid = geometry(axis, kept=kept)
    whole = grid.padded_planes(volume)
    assert whole.shape[1] == whole.shape[2] == grid.padded and (whole != 0).any()
    for source_axis in range(3):
        edges = [0, 1, 5, 5, 6, 13, 30, SHAPE[source_axis]]  # bands of uneven widths, one empty
        filled = np.zeros_like(whole)
        for start, stop in zip(edges, edges[1:]):
            grid.fill_padded(filled, volume, source_axis, start, stop)
        assert np.array_equal(filled, whole), f"bands along axis {source_axis}"


@pytest.mark.parametrize("length, size", [(218, 64), (218, 112), (218, 224), (182, 64), (100, 33), (14, 218), (31, 112), (64, 64)])
def test_the_numpy_resize_is_pytorchs_bilinear_interpolate(length, size):
    # shrinking (antialiased), enlarging (plain bilinear) and the identity: the slicing jobs resize with
    # resize_square and import no torch; resize_stack is F.interpolate itself
    from headmri.slices.geometry import resize_square, resize_stack

    stack = np.random.default_rng(length + size).random((3, length, length)).astype(np.float32)
    np.testing.assert_allclose(resize_square(stack, size), resize_stack(stack, size).numpy(), rtol=0, atol=5e-6)
