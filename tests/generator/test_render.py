"""The torch renderer: shapes, masks, determinism and how attributes change the picture."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from generator.attributes import ATTRIBUTES, SceneAttributes, coolwarm
from generator.parallel import usable_cores, worker_count
from generator.raymath import line_box_distance, ray_rounded_box
from generator.render import Renderer, frame_to_batch, render_scenes
from xaistudy.errors import UserError
from xaistudy.files import Stopwatch


def scenes(**changes) -> pd.DataFrame:
    """One neutral scene per value: ``changes`` maps attribute -> list of values."""
    count = max((len(v) for v in changes.values()), default=1)
    rows = []
    for i in range(count):
        values = {k: v[i] for k, v in changes.items()}
        rows.append(dataclasses.asdict(SceneAttributes(**values)))
    return pd.DataFrame(rows, columns=list(ATTRIBUTES))


def test_shapes_and_dtypes_for_several_sizes():
    params = scenes(obj_color=[0.1, 0.9])
    for size in (64, 128):
        images, masks = render_scenes(params, size=size)
        assert images.shape == (2, size, size, 3) and images.dtype == np.uint8
        assert masks.shape == (2, size, size) and masks.dtype == np.uint8


def test_deterministic():
    params = scenes(bending=[0.3, -0.2], obj_rotation_yaw=[1.0, -2.0], spherical=[0.2, 0.9])
    first = render_scenes(params, size=64)
    second = render_scenes(params, size=64)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_pixels_do_not_depend_on_batching():
    params = scenes(spherical=[0.0, 0.5, 1.0], obj_rotation_pitch=[0.8, -0.3, 0.0])
    together = render_scenes(params, size=64, batch_size=3)
    alone = render_scenes(params, size=64, batch_size=1)
    np.testing.assert_array_equal(together[0], alone[0])
    np.testing.assert_array_equal(together[1], alone[1])


def test_worker_processes_give_the_same_pixels_as_one_process():
    params = scenes(
        spherical=[0.0, 0.3, 0.6, 0.9, 1.0],
        bending=[0.3, -0.2, 0.0, 0.1, -0.3],
        obj_rotation_yaw=[1.0, -2.0, 0.5, 0.0, 3.0],
        fliplr=[False, True, False, True, False],
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torch may round the last bit differently with more threads
    try:
        alone = render_scenes(params, size=48, batch_size=2, workers=1)
        parallel = render_scenes(params, size=48, batch_size=2, workers=2)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(parallel[0], alone[0])
    np.testing.assert_array_equal(parallel[1], alone[1])
    assert len({m.tobytes() for m in parallel[1]}) == len(params)  # rows kept in order


def test_workers_write_straight_into_a_memory_mapped_dataset_file(tmp_path):
    params = scenes(spherical=[0.1, 0.5, 0.9, 0.3], bending=[0.2, -0.1, 0.0, 0.3])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = render_scenes(params, size=32, batch_size=1, workers=1)
        images = np.lib.format.open_memmap(
            tmp_path / "images.npy", mode="w+", dtype=np.uint8, shape=(4, 32, 32, 3)
        )
        masks = np.lib.format.open_memmap(
            tmp_path / "masks.npy", mode="w+", dtype=np.uint8, shape=(4, 32, 32)
        )
        render_scenes(params, size=32, batch_size=1, workers=2, out=(images, masks))
    finally:
        torch.set_num_threads(threads)
    del images, masks
    np.testing.assert_array_equal(np.load(tmp_path / "images.npy"), alone[0])
    np.testing.assert_array_equal(np.load(tmp_path / "masks.npy"), alone[1])


def test_worker_count():
    cpu = torch.device("cpu")
    assert worker_count(None, cpu, 1) == 1  # too few scenes to pay for a process
    assert worker_count(None, cpu, 10**6) == usable_cores()
    assert worker_count(3, cpu, 1) == 3
    for bad in (0, -1, 1.5):
        with pytest.raises(UserError, match="workers"):
            worker_count(bad, cpu, 100)
    with pytest.raises(UserError, match="CPU"):
        worker_count(2, torch.device("cuda"), 100)


def test_mask_holds_every_block_in_two4two_order():
    _, masks = render_scenes(scenes(), size=128)
    assert set(np.unique(masks[0])) == set(range(9))
    mask = masks[0]

    def center(block):
        rows, cols = np.nonzero(mask == block)
        return rows.mean(), cols.mean()

    # upright scene: left arms left of the right arms, top arms above bottom arms
    assert center(1)[1] < center(7)[1]
    assert center(1)[0] < center(2)[0] and center(7)[0] < center(8)[0]
    spine = [center(b)[1] for b in (3, 4, 5, 6)]
    assert spine == sorted(spine)
    # the object sits in the middle of a mostly empty frame
    assert (mask == 0).sum() > 0.7 * mask.size
    assert mask[:5].max() == 0 and mask[-5:].max() == 0


def test_fliplr_mirrors_image_and_mask():
    params = scenes(fliplr=[False, True], bending=[0.3, 0.3], obj_rotation_yaw=[0.7, 0.7])
    images, masks = render_scenes(params, size=64)
    np.testing.assert_array_equal(masks[1], masks[0][:, ::-1])
    np.testing.assert_array_equal(images[1], images[0][:, ::-1])


def test_arms_move_with_arm_position():
    _, masks = render_scenes(scenes(arm_position=[0.0, 1.0]), size=128)
    cols = [np.nonzero(m == 7)[1].mean() for m in masks]
    spine_cols = [np.nonzero(m == 3)[1].mean() for m in masks]
    # the right arm moves away from the left end of the spine
    assert cols[1] - spine_cols[1] > cols[0] - spine_cols[0] + 5


def test_color_follows_coolwarm():
    images, masks = render_scenes(scenes(obj_color=[0.0, 1.0], bg_color=[1.0, 0.0]), size=64)
    for image, mask, obj, bg in zip(images, masks, (0.0, 1.0), (1.0, 0.0), strict=True):
        obj_rgb, bg_rgb = coolwarm(obj), coolwarm(bg)
        obj_mean = image[mask > 0].mean(0)
        bg_mean = image[mask == 0].mean(0)
        # red minus blue has the sign of the color map's red minus blue
        assert np.sign(obj_mean[0] - obj_mean[2]) == np.sign(obj_rgb[0] - obj_rgb[2])
        assert np.sign(bg_mean[0] - bg_mean[2]) == np.sign(bg_rgb[0] - bg_rgb[2])


def test_spherical_changes_silhouette():
    _, masks = render_scenes(scenes(spherical=[0.0, 1.0]), size=128)
    cube, sphere = (masks[0] == 4), (masks[1] == 4)
    # a cube fills its bounding square, a sphere about pi/4 of it
    for block, low, high in ((cube, 0.9, 1.01), (sphere, 0.7, 0.85)):
        rows, cols = np.nonzero(block)
        box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        assert low < block.sum() / box < high


def test_renderer_returns_tensors_on_its_device():
    params = scenes(obj_rotation_pitch=[0.5], obj_rotation_roll=[-0.5])
    renderer = Renderer(size=32, device=torch.device("cpu"), antialias=False)
    image, mask = renderer.render(frame_to_batch(params))
    assert image.dtype == torch.uint8 and image.shape == (1, 32, 32, 3)
    assert mask.dtype == torch.uint8 and mask.shape == (1, 32, 32)


def test_stopwatch_times_every_stage_without_changing_the_pixels():
    batch = frame_to_batch(scenes(bending=[0.3], spherical=[0.6]))
    renderer = Renderer(size=32)
    plain = renderer.render(batch)
    renderer.stopwatch = Stopwatch()
    timed = renderer.render(batch)
    stages = {"geometry", "intersection", "shadow", "shading", "antialias", "transfer"}
    assert set(renderer.stopwatch.seconds) == stages
    for untimed, measured in zip(plain, timed, strict=True):
        assert torch.equal(untimed, measured)


def test_antialiasing_softens_edges_only():
    params = scenes(obj_color=[1.0], bg_color=[0.0])
    sharp, mask = render_scenes(params, size=64, antialias=False)
    smooth, mask_aa = render_scenes(params, size=64, antialias=True)
    np.testing.assert_array_equal(mask, mask_aa)
    changed = np.any(sharp[0] != smooth[0], axis=-1)
    assert changed.any()
    # only pixels next to a block edge change
    m = mask[0]
    edge = np.zeros_like(changed)
    edge[1:] |= m[1:] != m[:-1]
    edge[:-1] |= m[1:] != m[:-1]
    edge[:, 1:] |= m[:, 1:] != m[:, :-1]
    edge[:, :-1] |= m[:, 1:] != m[:, :-1]
    assert not (changed & ~edge).any()


def test_bad_input_is_a_user_error():
    params = scenes()
    with pytest.raises(UserError, match="spherical"):
        render_scenes(params.assign(spherical=2.0))
    with pytest.raises(UserError, match="lacks"):
        render_scenes(params.drop(columns=["bending"]))
    with pytest.raises(UserError, match="batch_size"):
        render_scenes(params, batch_size=0)


def test_ray_hits_rounded_box_where_its_distance_vanishes():
    generator = torch.Generator().manual_seed(0)
    m = 4000
    # rays from outside toward boxes of varied rounding, spheres (core 0) included
    core = torch.rand(m, generator=generator) * 0.3
    core[:500] = 0.0
    radius = 0.05 + torch.rand(m, generator=generator) * 0.3
    target = (torch.rand(3, m, generator=generator) - 0.5) * 2 * (core + radius)
    origin = torch.randn(3, m, generator=generator)
    origin = origin / origin.norm(dim=0) * 5.0
    direction = target - origin
    direction = direction / direction.norm(dim=0)
    half = core + radius
    near = (-origin - half * direction.sign()) / direction
    t_enter = near.amax(0)
    t = ray_rounded_box(origin, direction, core, radius, t_enter)

    def distance(points):
        q = points.abs() - core
        outside = q.clamp(min=0).norm(dim=0)
        return outside + q.amax(0).clamp(max=0) - radius

    # reference: many sphere-tracing steps from the box entry
    march = t_enter.clone()
    for _ in range(400):
        march = march + distance(origin + direction * march).clamp(min=0)
    traced_hit = distance(origin + direction * march).abs() < 1e-4
    exact_hit = torch.isfinite(t)
    assert (traced_hit == exact_hit).float().mean() > 0.998  # only grazing rays may differ
    both = traced_hit & exact_hit
    assert both.sum() > 1000
    # a pixel spans about 0.05 units at the object: grazing hits may be off by a tenth
    error = (t[both] - march[both]).abs()
    assert error.max() < 5e-3 and error.mean() < 1e-4
    assert distance(origin + direction * t.where(exact_hit, 0.0))[exact_hit].abs().max() < 5e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_images_and_masks():
    """Five scenes in batches of two: the GPU's copies home go through two reused buffers,
    and the last batch is short; every scene must land in its own row."""
    params = scenes(
        bending=[0.3, -0.1, 0.0, 0.2, -0.3],
        obj_rotation_yaw=[1.0, -2.5, 0.0, 2.0, -1.0],
        spherical=[0.1, 0.8, 0.5, 0.3, 0.9],
    )
    cpu_images, cpu_masks = render_scenes(params, size=64, batch_size=2)
    gpu_images, gpu_masks = render_scenes(
        params, size=64, device=torch.device("cuda"), batch_size=2
    )
    assert (cpu_masks == gpu_masks).mean() > 0.995
    difference = np.abs(cpu_images.astype(int) - gpu_images.astype(int))
    assert difference.mean() < 0.5 and (difference <= 2).mean() > 0.995
    for row in range(len(params)):  # each row is its own scene, not a neighbor's
        assert (cpu_masks[row] == gpu_masks[row]).mean() > 0.99
    empty_images, empty_masks = render_scenes(params.iloc[:0], size=64, device=torch.device("cuda"))
    assert empty_images.shape == (0, 64, 64, 3) and empty_masks.shape == (0, 64, 64)


def test_line_box_distance_is_the_closest_approach():
    generator = torch.Generator().manual_seed(1)
    m = 1000
    core = torch.rand(m, generator=generator) * 0.4
    origin = torch.randn(3, m, generator=generator)
    origin = origin / origin.norm(dim=0) * 9.0
    target = (torch.rand(3, m, generator=generator) - 0.5) * 2 * (core + 0.3)
    direction = target - origin
    direction = direction / direction.norm(dim=0)
    distance, t = line_box_distance(origin, direction, core)

    def to_box(points):  # (3, M, S) -> (M, S)
        return (points.abs() - core[:, None]).clamp(min=0).norm(dim=0)

    # reference: the smallest distance over dense points along each line near the box
    steps = torch.linspace(7.0, 11.0, 4001)
    brute = to_box(origin[..., None] + direction[..., None] * steps).amin(-1)
    assert (distance - brute).abs().max() < 1e-3
    assert (distance > 0).any() and (distance == 0).any()  # lines that miss and that cross
    reached = to_box((origin + direction * t)[..., None])[:, 0]
    assert (reached - distance).abs().max() < 1e-4
