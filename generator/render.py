"""Batched torch renderer of Two4Two scenes: images and per-pixel block-id masks.

The model of the scene (docs/renderer.md): eight rounded boxes (:mod:`generator.geometry`)
in front of a diffuse background plane, seen by Two4Two's pinhole camera and lit by an
area light at (10, 10, 10). Rays are cast analytically: a ray is tested only against the
blocks whose projected bounding circle covers its pixel, enters the block's box by a slab
test and reaches the rounded surface in a few sphere-tracing steps. Shadows treat each
block as a sphere and the light as a disk, which gives their soft edges in closed form.
Anti-aliasing blends only the pixels on block edges, by their analytic coverage.

Everything is torch, float32, the same code on CPU and CUDA, deterministic. The ray
maths live in :mod:`generator.raymath`; :func:`render_scenes` renders a whole scene table,
in worker processes (:mod:`generator.parallel`) on a CPU with several cores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from generator.attributes import ATTRIBUTES, CONTINUOUS, LABELS, coolwarm, validate_frame
from generator.geometry import DEFAULT_CALIBRATION, BlockPoses, Calibration, block_poses
from generator.parallel import (
    CPU_BATCH,
    is_shared,
    render_in_workers,
    shared_array,
    worker_count,
)
from generator.raymath import (
    gather_rows,
    line_box_distance,
    ray_rounded_box,
    rounded_box_normal,
)
from xaistudy.errors import UserError
from xaistudy.files import Stopwatch

CAMERA_X = 9.0
FOCAL_OVER_SENSOR = 50.0 / 36.0  # 50 mm lens on a 36 mm sensor
LIGHT_POSITION = (10.0, 10.0, 10.0)
# Two4Two's light: an ellipse 20 x 15 turned by Euler XYZ (pi/4, pi/4, pi/2); its local x
# and y axes and its emitting direction (local -z) in the world:
LIGHT_AXES = ((0.0, 0.70710678, -0.70710678), (-0.70710678, 0.5, 0.5))
LIGHT_NORMAL = (-0.70710678, -0.5, -0.5)
LIGHT_SEMI_AXES = (10.0, 7.5)
LIGHT_SAMPLES = 16
PLANE_GAP = 10.0
NUM_BLOCKS = 8


@dataclass(frozen=True)
class Look:
    """Light, shadow and tone constants fitted to the Two4Two reference renders."""

    light_power: float = 1.0  # area light, irradiance at the origin facing it
    ambient: float = 0.13  # Blender's gray world, and light bounced about
    background_gain: float = 0.957
    light_radius: float = 8.75  # the 20 x 15 ellipse as a disk, for shadows
    shadow_sphere: float = 1.0  # occluder sphere radius / block half edge
    tone_middle: float = 0.0712
    tone_contrast: float = 0.645
    tone_white: float = 1.1214
    background_cell: int = 8  # the background is lit every this many pixels


DEFAULT_LOOK = Look()


def _coolwarm_table(device: torch.device) -> torch.Tensor:
    """matplotlib's 256-entry coolwarm table (256, 3), indexed the way matplotlib does."""
    return torch.tensor(coolwarm((np.arange(256) + 0.5) / 256), dtype=torch.float32, device=device)


def _ellipse_samples(device: torch.device) -> torch.Tensor:
    """Fixed, evenly spread points (K, 3) on the elliptic area light (a sunflower pattern)."""
    k = torch.arange(LIGHT_SAMPLES, dtype=torch.float64)
    radius = torch.sqrt((k + 0.5) / LIGHT_SAMPLES)
    angle = k * math.pi * (3 - math.sqrt(5))
    axes = torch.tensor(LIGHT_AXES, dtype=torch.float64)
    u = (radius * torch.cos(angle) * LIGHT_SEMI_AXES[0])[:, None] * axes[0]
    v = (radius * torch.sin(angle) * LIGHT_SEMI_AXES[1])[:, None] * axes[1]
    points = torch.tensor(LIGHT_POSITION, dtype=torch.float64) + u + v
    return points.to(device=device, dtype=torch.float32)


def _bilinear_matrix(coarse: int, size: int, device: torch.device) -> torch.Tensor:
    """Weights (size, coarse) of bilinear upsampling from ``coarse`` to ``size`` samples,
    with cell centers aligned and edges clamped (F.interpolate's align_corners=False)."""
    source = ((torch.arange(size, dtype=torch.float64) + 0.5) * (coarse / size) - 0.5).clamp(min=0)
    low = source.floor().long().clamp(max=coarse - 1)
    high = (low + 1).clamp(max=coarse - 1)
    weight = source - low
    matrix = torch.zeros(size, coarse, dtype=torch.float64)
    rows = torch.arange(size)
    matrix.index_put_((rows, low), 1 - weight, accumulate=True)
    matrix.index_put_((rows, high), weight, accumulate=True)
    return matrix.to(device=device, dtype=torch.float32)


def _lookup(table: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    index = (values * table.shape[0]).floor().clamp(0, table.shape[0] - 1).long()
    return table[index]


@dataclass
class Hits:
    """Nearest block hit of R rays: ``block`` (R,) 0 = none, 1..8. For the W rays that hit:
    ``ray`` (W,) their index, ``t`` (W,) distance, ``normal`` (W, 3) world normal (or None)."""

    block: torch.Tensor
    ray: torch.Tensor
    t: torch.Tensor
    normal: torch.Tensor | None


class Renderer:
    """Renders batches of scenes at ``size`` x ``size`` on ``device``.

    ``render(batch)`` takes a dict of (N,) float tensors (the columns of
    ``generator.attributes.ATTRIBUTES``; ``obj_name`` as 0/1 label, ``fliplr`` as 0/1) and
    returns uint8 tensors: images (N, H, W, 3) and masks (N, H, W) with block ids 0..8.
    """

    def __init__(
        self,
        size: int = 128,
        device: torch.device | None = None,
        antialias: bool = True,
        calibration: Calibration = DEFAULT_CALIBRATION,
        look: Look = DEFAULT_LOOK,
    ):
        if int(size) < 8:
            raise UserError(f"image size must be at least 8 pixels, got {size}")
        self.size = int(size)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.antialias = antialias
        self.calibration = calibration
        self.look = look
        self.focal = self.size * FOCAL_OVER_SENSOR  # focal length in pixels
        self.table = _coolwarm_table(self.device)
        self.camera = torch.tensor([CAMERA_X, 0.0, 0.0], device=self.device)
        self.light = torch.tensor(LIGHT_POSITION, device=self.device)
        self.light_normal = torch.tensor(LIGHT_NORMAL, device=self.device)
        self.light_samples = _ellipse_samples(self.device)
        self.light_norm = 1.0  # set just below: the unnormalized vector's size at the origin
        facing = -self.light_normal[None]
        self.light_norm = float(
            (self._light_vector(torch.zeros(1, 3, device=self.device)) * facing).sum()
        )
        # set a Stopwatch to time the stages of each render (bench/render.py does)
        self.stopwatch: Stopwatch | None = None

    # ---- rays -------------------------------------------------------------------------
    def ray_directions(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Unit directions (..., 3) through image points (pixel units, centers at +0.5)."""
        half = self.size / 2
        d = torch.stack([torch.full_like(rows, -self.focal), cols - half, half - rows], -1)
        return F.normalize(d, dim=-1)

    def _project(self, points: torch.Tensor):
        """Image (row, col) of world points (..., 3) and their depth along the view axis."""
        depth = CAMERA_X - points[..., 0]
        half = self.size / 2
        return (
            half - self.focal * points[..., 2] / depth,
            half + self.focal * points[..., 1] / depth,
            depth,
        )

    # ---- intersection -----------------------------------------------------------------
    def _local_rays(self, poses: BlockPoses, image, block, direction):
        """Rays of M (scene ``image``, block ``block``) pairs in the block's frame: origins
        and directions (3, M), one row per coordinate, and the block's half edge and corner
        radius (M,). ``image``, ``block`` (M,), ``direction`` (M, 3) in the world."""
        n = poses.centers.shape[0]
        # per block: the camera in its frame, R^T (camera - c), its rotation's nine entries
        # (row major), half edge and radius; gathered for all pairs by one index_select
        cameras = ((self.camera - poses.centers)[..., None, :] @ poses.rotations)[..., 0, :]
        sizes = torch.stack([poses.half, poses.radius], -1)[:, None].expand(n, NUM_BLOCKS, 2)
        table = torch.cat([cameras, poses.rotations.flatten(-2), sizes], -1)  # (N, 8, 14)
        pair = gather_rows(table.reshape(-1, 14).t(), image * NUM_BLOCKS + block)
        origin, rot, half, radius = pair[0:3], pair[3:12], pair[12], pair[13]
        d = direction.t()
        # R^T d, one coordinate at a time
        local_dir = torch.stack(
            [d[0] * rot[j] + d[1] * rot[3 + j] + d[2] * rot[6 + j] for j in range(3)]
        )
        return origin, local_dir, half, radius

    def _intersect_pairs(self, poses: BlockPoses, image, block, direction):
        """Which of the M pairs hit: pair indices (H,), distance (H,) along ``direction``
        from the camera to block ``block`` of scene ``image``, and the local hit points
        (H, 3). ``image``, ``block`` (M,), ``direction`` (M, 3)."""
        origin, local_dir, half, radius = self._local_rays(poses, image, block, direction)
        safe = torch.where(local_dir.abs() < 1e-9, torch.full_like(local_dir, 1e-9), local_dir)
        inverse = 1.0 / safe
        scaled = origin * inverse
        reach = half * inverse.abs()
        near = -scaled - reach  # entry and exit along each axis, ordered
        far = reach.sub_(scaled)
        t_enter = torch.maximum(torch.maximum(near[0], near[1]), near[2])
        t_exit = torch.minimum(torch.minimum(far[0], far[1]), far[2])
        box_hit = (t_enter <= t_exit) & (t_exit > 0)
        keep = box_hit.nonzero()[:, 0]
        rows = torch.cat([origin, local_dir, (half - radius)[None], radius[None]])
        rows = gather_rows(torch.cat([rows, t_enter[None], t_exit[None]]), keep)
        o, d, core, r, t_enter, t_exit = rows[0:3], rows[3:6], rows[6], rows[7], rows[8], rows[9]
        t = ray_rounded_box(o, d, core, r, t_enter)
        hit = (t <= t_exit).nonzero()[:, 0]  # inf (a miss) fails this too
        t = t.index_select(0, hit)
        point = torch.addcmul(gather_rows(o, hit), gather_rows(d, hit), t).t()
        return keep.index_select(0, hit), t, point

    def _nearest(self, poses, ray, image, block, direction, num_rays, normals=True) -> Hits:
        """Resolve candidate (ray, block) pairs to the nearest hit per ray."""
        pair, t, local = self._intersect_pairs(poses, image, block, direction)
        # index_select throughout: much faster than tensor[index] on the CPU
        ray, image, block = (
            ray.index_select(0, pair),
            image.index_select(0, pair),
            block.index_select(0, pair),
        )
        depth = torch.full((num_rays,), math.inf, device=self.device)
        depth.scatter_reduce_(0, ray, t, reduce="amin")
        win = (t == depth.index_select(0, ray)).nonzero()[:, 0]
        winner = ray.index_select(0, win)
        block, t = block.index_select(0, win), t.index_select(0, win)
        hit_block = torch.zeros(num_rays, dtype=torch.int8, device=self.device)
        hit_block.index_copy_(0, winner, (block + 1).to(torch.int8))
        if not normals:
            return Hits(hit_block, winner, t, None)
        wi = image.index_select(0, win)
        core = (poses.half - poses.radius).index_select(0, wi)
        local_normal = rounded_box_normal(local.index_select(0, win), core)
        rotation = poses.rotations.reshape(-1, 3, 3).index_select(0, wi * NUM_BLOCKS + block)
        normal = (rotation @ local_normal[..., None])[..., 0]
        return Hits(hit_block, winner, t, normal)

    def _primary_pairs(self, poses: BlockPoses):
        """Candidate (pixel, block) pairs: the pixels whose center lies in the screen
        rectangle around the projected corners of the block's box (which holds the rounded
        block). Returns image, block, row, col (M,) each."""
        n, size = poses.centers.shape[0], self.size
        signs = torch.tensor(
            [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)],
            dtype=torch.float32,
            device=self.device,
        )
        local = signs * poses.half[:, None, None]  # (N, 8 corners, 3)
        corners = poses.centers[:, :, None] + local[:, None] @ poses.rotations.transpose(-1, -2)
        row, col, _ = self._project(corners)  # (N, 8 blocks, 8 corners)
        # first and last pixel whose center (index + 0.5) lies within the corners' range
        top = torch.ceil(row.amin(-1) - 0.5).long()
        left = torch.ceil(col.amin(-1) - 0.5).long()
        bottom = torch.floor(row.amax(-1) - 0.5).long()
        right = torch.floor(col.amax(-1) - 0.5).long()
        extent = torch.maximum(bottom - top, right - left).max().item() + 1 if n else 1
        steps = torch.arange(max(1, min(int(extent), size)), device=self.device)
        rows = top[..., None, None] + steps[:, None]  # (N, 8, S, 1)
        cols = left[..., None, None] + steps[None, :]  # (N, 8, 1, S)
        # ... and within the projected bounding sphere, widened for off-axis stretch
        center_row, center_col, depth = self._project(poses.centers)  # (N, 8)
        bound = poses.bounding_radius()[:, None]
        reach = self.focal * bound / (depth - bound).clamp(min=1e-3) * 1.2 + 1.0
        near = (rows + 0.5 - center_row[..., None, None]) ** 2 + (
            cols + 0.5 - center_col[..., None, None]
        ) ** 2 <= reach[..., None, None] ** 2
        candidate = near & (
            (rows >= 0)
            & (rows < size)
            & (rows <= bottom[..., None, None])
            & (cols >= 0)
            & (cols < size)
            & (cols <= right[..., None, None])
        )
        image, block, r, c = candidate.nonzero(as_tuple=True)
        flat = image * NUM_BLOCKS + block
        return image, block, top.view(-1)[flat] + r, left.view(-1)[flat] + c

    # ---- light ------------------------------------------------------------------------
    def _light_vector(self, points: torch.Tensor) -> torch.Tensor:
        """Vector irradiance (M, 3) of the elliptic area light at world ``points`` (M, 3):
        a surface with unit normal n, seeing all of the light, receives ``n . vector``.
        Normalized to 1 at the origin for a surface facing the light."""
        rel = self.light_samples[None] - points[:, None]  # (M, K, 3) point -> light sample
        distance = rel.norm(dim=-1, keepdim=True)
        direction = rel / distance
        emitted = (-(direction * self.light_normal).sum(-1, keepdim=True)).clamp(min=0)
        vector = (emitted * direction / distance**2).sum(1)
        return vector / self.light_norm

    def _visibility(self, poses: BlockPoses, points, image, skip_block=None):
        """Fraction (M,) of the area light seen from world ``points`` (M, 3) of scene
        ``image`` (M,): the light as a disk, each block as a sphere occluder (closed-form
        soft shadows). ``skip_block`` (M,) 1..8 leaves out the block a point lies on."""
        look = self.look
        to_light = self.light - points
        light_distance = to_light.norm(dim=-1, keepdim=True)
        light_dir = to_light / light_distance
        light_angle = look.light_radius / light_distance  # (M, 1)
        # point -> block center, one (M, 8) plane per coordinate: no reductions over 3
        centers = poses.centers.permute(2, 0, 1).reshape(3, -1, NUM_BLOCKS)
        rel = torch.stack([c.index_select(0, image) for c in centers])  # (3, M, 8)
        rel.sub_(points.t()[..., None])
        along = (rel * light_dir.t()[..., None]).sum(0)  # (M, 8)
        across = ((rel * rel).sum(0) - along * along).clamp_(min=0).sqrt_()
        sphere = (look.shadow_sphere * poses.half.index_select(0, image))[:, None]
        ahead = along > sphere
        along = along.clamp(min=1e-3)
        blocker_angle = sphere / along
        separation = across / along
        # overlap of the blocker's and the light's disks, smooth in their separation
        spread = blocker_angle + light_angle
        overlap = (spread - separation) / (2 * torch.minimum(blocker_angle, light_angle))
        overlap = overlap.clamp(0, 1)
        overlap = overlap * overlap * (3 - 2 * overlap)
        coverage = (blocker_angle / light_angle).clamp(max=1) ** 2
        occlusion = torch.where(ahead, overlap * coverage, torch.zeros_like(overlap))
        if skip_block is not None:
            own = F.one_hot(skip_block, NUM_BLOCKS + 1)[:, 1:].bool()
            occlusion = occlusion.masked_fill(own, 0.0)
        return (1 - occlusion).prod(-1)

    def _irradiance(self, points, normals, visibility):
        """Light (M,) reaching surface points: the area light plus the ambient world."""
        look = self.look
        direct = (self._light_vector(points) * normals).sum(-1).clamp(min=0)
        return look.ambient + look.light_power * direct * visibility

    def _tone(self, linear):
        """Display values in [0, 1] from linear radiance: a filmic curve, logistic in
        log exposure, which compresses highlights and lifts shadows as Blender's does."""
        look = self.look
        x = (linear.clamp(min=1e-6) / look.tone_middle) ** look.tone_contrast
        return (look.tone_white * x / (1 + x)).clamp(0, 1)

    def _backdrop(self, poses: BlockPoses, bg_color) -> torch.Tensor:
        """Display color (N, H, W, 3) of the background plane behind every pixel.

        The plane's light (its gradient and the very soft shadows of the blocks) varies
        slowly, so it is lit and tone mapped on a coarse grid and interpolated.
        """
        n, size, cell = poses.centers.shape[0], self.size, self.look.background_cell
        coarse = max(2, size // cell)
        centers = (torch.arange(coarse, device=self.device) + 0.5) * (size / coarse)
        rows, cols = torch.meshgrid(centers, centers, indexing="ij")
        direction = self.ray_directions(rows, cols).reshape(-1, 3)  # (C, 3)
        plane = self._plane_x(poses)  # (N,)
        t = (plane[:, None] - CAMERA_X) / direction[None, :, 0]  # (N, C)
        points = (self.camera + t[..., None] * direction).reshape(-1, 3)
        m = direction.shape[0]
        normal = torch.tensor([1.0, 0.0, 0.0], device=self.device).expand(n * m, 3)
        image = torch.arange(n, device=self.device).repeat_interleave(m)
        visible = self._visibility(poses, points, image)
        light = self._irradiance(points, normal, visible).reshape(n, m, 1)
        color = self._tone(bg_color[:, None, :] * self.look.background_gain * light)
        # bilinear upsampling as two small matrix products, columns then rows: several
        # times faster than F.interpolate on channel-last pictures
        spread = _bilinear_matrix(coarse, size, self.device)  # (H, C)
        color = torch.einsum("sk,nrkx->nrsx", spread, color.reshape(n, coarse, coarse, 3))
        return torch.matmul(spread, color.reshape(n, coarse, size * 3)).reshape(n, size, size, 3)

    def _plane_x(self, poses: BlockPoses) -> torch.Tensor:
        """Two4Two puts the background plane ``PLANE_GAP`` behind the object's back (N,)."""
        back = (poses.centers[..., 0] - poses.extents()[..., 0]).amin(1)
        return back - PLANE_GAP

    def _shade_blocks(self, poses, hits: Hits, obj_color, block_light) -> torch.Tensor:
        """Display colors (W, 3) of the pixels ``hits.ray`` that see a block.
        ``block_light`` (N, 8, 3): the light vector at each block's center."""
        size = self.size
        pixel = hits.ray
        image = pixel // (size * size)
        local = pixel % (size * size)
        direction = self.ray_directions((local // size).float() + 0.5, (local % size).float() + 0.5)
        points = self.camera + hits.t[:, None] * direction
        block = hits.block.index_select(0, pixel).long()
        visible = self._visibility(poses, points, image, block)
        # the light vector hardly changes across one block: take it at the block's center
        center_light = block_light.reshape(-1, 3).index_select(0, image * NUM_BLOCKS + block - 1)
        direct = (center_light * hits.normal).sum(-1).clamp(min=0)
        light = self.look.ambient + self.look.light_power * direct * visible
        return self._tone(obj_color.index_select(0, image) * light[:, None])

    # ---- the whole picture ------------------------------------------------------------
    def render(self, batch: dict[str, torch.Tensor]):
        """Render a batch: dict of (N,) tensors -> images (N, H, W, 3), masks (N, H, W) uint8."""
        with torch.inference_mode():
            return self._render(batch)

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        """Time one stage on ``self.stopwatch``, if set. CUDA runs kernels asynchronously,
        so it is synchronized on both sides: each stage is charged its own kernels."""
        if self.stopwatch is None:
            yield
            return
        self._synchronize()
        with self.stopwatch(name):
            yield
            self._synchronize()

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _render(self, batch):
        size = self.size
        with self._stage("geometry"):
            batch = {k: v.to(self.device, torch.float32) for k, v in batch.items()}
            poses = block_poses(batch, self.calibration)
            n = poses.centers.shape[0]
            obj_color = _lookup(self.table, batch["obj_color"])
            bg_color = _lookup(self.table, batch["bg_color"])
            block_light = self._light_vector(poses.centers.reshape(-1, 3)).reshape(n, 8, 3)
        with self._stage("intersection"):
            image, block, rows, cols = self._primary_pairs(poses)
            pixel = (image * size + rows) * size + cols
            direction = self.ray_directions(rows.float() + 0.5, cols.float() + 0.5)
            hits = self._nearest(poses, pixel, image, block, direction, n * size * size)
            mask = hits.block.reshape(n, size, size)
        with self._stage("shadow"):
            backdrop = self._backdrop(poses, bg_color)
        with self._stage("shading"):
            color = self._shade_blocks(poses, hits, obj_color, block_light)
            picture = backdrop.reshape(-1, 3).index_put((hits.ray,), color)
            picture = picture.reshape(n, size, size, 3)
        if self.antialias:
            with self._stage("antialias"):
                depth = torch.full((n * size * size,), math.inf, device=self.device)
                depth.index_copy_(0, hits.ray, hits.t)
                picture = self._antialias(poses, mask, depth, picture, backdrop)
        with self._stage("transfer"):
            images = picture.mul_(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
            mask = mask.to(torch.uint8)
            flip = (batch["fliplr"] > 0.5).nonzero()[:, 0]
            images[flip] = images[flip].flip(2)
            mask[flip] = mask[flip].flip(2)
        return images, mask

    def _antialias(self, poses, mask, depth, picture, backdrop):
        """Blend the pixels on block edges (id differs from a 4-neighbor's) by coverage.

        Each block seen in the pixel or its four neighbors covers the share
        ``clamp(0.5 - d, 0, 1)`` of the pixel, ``d`` the signed distance in pixels from
        the pixel's center to the block's silhouette (:meth:`_silhouette_distance`).
        Front to back (by the depth where each block is seen), every block takes its
        share of what the blocks in front leave; the background takes the rest. A block
        lends the color of the pixel (or neighbor) showing it: edges are not shaded again.
        """
        size = self.size
        padded = F.pad(mask, (1, 1, 1, 1), value=-1)  # (N, H+2, W+2) int8; -1 outside
        center = padded[:, 1:-1, 1:-1]
        edge = torch.zeros_like(center, dtype=torch.bool)
        for dr, dc in ((0, 1), (2, 1), (1, 0), (1, 2)):
            neighbor = padded[:, dr : dr + size, dc : dc + size]
            edge |= (neighbor != center) & (neighbor >= 0)
        pixel = edge.view(-1).nonzero()[:, 0]  # flat (image, row, col) of the E edge pixels
        if pixel.numel() == 0:
            return picture
        image, rows, cols = pixel // (size * size), pixel // size % size, pixel % size
        # the pixel and its 4 neighbors, center first: ids, depths (E, 5) and colors
        # (E, 5, 3), gathered through flat indices (much faster than three index tensors)
        steps = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
        nr = torch.stack([rows + 1 + r for r, _ in steps], 1)  # in padded coordinates
        nc = torch.stack([cols + 1 + c for _, c in steps], 1)
        slots = len(steps)
        padded_index = (image[:, None] * (size + 2) + nr) * (size + 2) + nc
        ids = padded.view(-1).index_select(0, padded_index.view(-1)).view(-1, slots)
        # outside the image the id is -1, which no block has: any color will do there
        inner = (image[:, None] * size + (nr - 1).clamp(0, size - 1)) * size
        inner = (inner + (nc - 1).clamp(0, size - 1)).view(-1)
        flat_picture = picture.view(-1, 3)
        colors = flat_picture.index_select(0, inner).view(-1, slots, 3)
        # each distinct block of the neighborhood once, at its first slot
        earlier = torch.triu(torch.ones(slots, slots, dtype=torch.bool, device=self.device), 1)
        repeated = ((ids[:, :, None] == ids[:, None, :]) & earlier).any(1)
        candidate = (ids > 0) & ~repeated  # (E, 5)
        seen_at = depth.index_select(0, inner).view(-1, slots).masked_fill(~candidate, math.inf)
        # Where no neighbor shows the background, the rearmost block fills what the others
        # leave: its silhouette is taken to lie outside the pixel and is not computed.
        rearmost = seen_at.masked_fill(~candidate, -math.inf).argmax(1, keepdim=True)
        fills = torch.zeros_like(candidate).scatter_(1, rearmost, True)
        fills &= candidate & ~(ids == 0).any(1, keepdim=True)
        pairs = (candidate & ~fills).view(-1).nonzero()[:, 0]
        edge_index = pairs // slots
        distance = self._silhouette_distance(
            poses,
            image.index_select(0, edge_index),
            ids.view(-1).index_select(0, pairs).long() - 1,
            rows.index_select(0, edge_index),
            cols.index_select(0, edge_index),
        )
        coverage = torch.zeros(ids.shape, device=self.device)
        coverage.view(-1).index_copy_(0, pairs, (0.5 - distance).clamp_(0, 1))
        coverage.masked_fill_(fills, 1.0)
        # stay true to the mask: the block hit at the center covers at least half
        coverage[:, 0] = torch.where(ids[:, 0] > 0, coverage[:, 0].clamp(min=0.5), 0.0)
        # front to back: each block takes its coverage of what is left
        order = seen_at.argsort(1)
        coverage = coverage.gather(1, order)
        colors = colors.gather(1, order[..., None].expand(-1, -1, 3))
        left = torch.cumprod(1 - coverage, 1)
        weight = coverage * torch.cat([torch.ones_like(left[:, :1]), left[:, :-1]], 1)
        blended = (weight[..., None] * colors).sum(1)
        ground = backdrop.view(-1, 3).index_select(0, pixel)
        blended.addcmul_(left[:, -1:], ground)
        # ``picture`` is this render's own tensor: write the edge colors in place
        flat_picture.index_copy_(0, pixel, blended)
        return picture

    def _silhouette_distance(self, poses, image, block, rows, cols) -> torch.Tensor:
        """Signed distance (P,) in pixels from the centers of pixels ``rows``, ``cols`` (P,)
        to the silhouette of block ``block`` (0..7) of scene ``image``; negative inside.

        The pixel's ray passes the block's rounded surface at the distance of the line
        from the block's core box minus the corner radius (exact, in closed form); at
        distance ``t`` along the ray one pixel spans ``t / |(f, x, y)|`` across it.
        """
        half = self.size / 2
        x, y = cols.float() + (0.5 - half), (half - 0.5) - rows.float()
        reach = torch.sqrt(x * x + y * y + self.focal**2)  # |(f, x, y)|: pixels per radian
        direction = torch.stack([torch.full_like(x, -self.focal), x, y], 1) / reach[:, None]
        origin, local_dir, half_edge, radius = self._local_rays(poses, image, block, direction)
        gap, t = line_box_distance(origin, local_dir, half_edge - radius)
        return (gap - radius) * reach / t.clamp(min=1e-3)


def frame_to_batch(params) -> dict[str, torch.Tensor]:
    """Columns of a scene DataFrame as (N,) float32 tensors (labels 0/1, fliplr 0/1)."""
    validate_frame(params)
    columns = {name: params[name].to_numpy(dtype=np.float32) for name in CONTINUOUS}
    columns["obj_name"] = params["obj_name"].map(LABELS.index).to_numpy(dtype=np.float32)
    columns["fliplr"] = params["fliplr"].to_numpy(dtype=bool).astype(np.float32)
    return {name: torch.tensor(values) for name, values in columns.items()}


def render_scenes(
    params,
    size: int = 128,
    device: torch.device | None = None,
    batch_size: int = 256,
    antialias: bool = True,
    progress: bool = False,
    *,
    workers: int | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
    on_rendered: Callable[[int], None] | None = None,
):
    """Render every row of the scene table ``params`` (columns of ``ATTRIBUTES``).

    Returns images (N, size, size, 3) uint8 and masks (N, size, size) uint8 as numpy arrays:
    ``out`` if given (filled in place; a memory map opened for writing is filled by the
    worker processes directly), else new ones.
    ``batch_size``: the most scenes rendered at once (on the CPU at most ``CPU_BATCH``).
    ``workers``: processes rendering in parallel on the CPU (see
    :func:`generator.parallel.worker_count`;
    None picks one per usable core for large enough tables). The pixels do not depend on
    the batch size or the number of workers (with one torch thread per process; torch may
    round the last bit differently with more threads). ``on_rendered(count)`` is called
    as scenes are done, e.g. to move a progress bar.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size}")
    missing = [a for a in ATTRIBUTES if a not in params.columns]
    if missing:
        raise UserError(f"scene table lacks attribute column(s) {', '.join(missing)}")
    batch = frame_to_batch(params)
    renderer = Renderer(size=size, device=device, antialias=antialias)
    n, side = len(params), renderer.size
    count = worker_count(workers, renderer.device, n)
    if renderer.device.type == "cpu":
        batch_size = min(batch_size, CPU_BATCH)
    shapes = ((n, side, side, 3), (n, side, side))
    if out is not None and tuple(a.shape for a in out) != shapes:
        raise ValueError(f"out must hold arrays of shapes {shapes}")
    # worker processes write into shared memory: the given arrays if they are, else new
    direct = out is not None and (count == 1 or all(is_shared(a) for a in out))
    if direct:
        images, masks = out
    else:
        allocate = shared_array if count > 1 else np.empty
        images, masks = (allocate(shape, np.uint8) for shape in shapes)
    with tqdm(total=n, disable=not progress, desc="rendering", unit="img") as bar:

        def rendered(done: int) -> None:
            bar.update(done)
            if on_rendered is not None:
                on_rendered(done)

        if count > 1:
            render_in_workers(renderer, batch, images, masks, batch_size, count, rendered)
        elif renderer.device.type == "cuda":
            _render_on_cuda(renderer, batch, images, masks, batch_size, rendered)
        else:
            for start in range(0, n, batch_size):
                part = {k: v[start : start + batch_size] for k, v in batch.items()}
                image_t, mask_t = renderer.render(part)
                images[start : start + batch_size] = image_t.numpy()
                masks[start : start + batch_size] = mask_t.numpy()
                rendered(image_t.shape[0])
    if out is not None and not direct:
        out[0][:] = images
        out[1][:] = masks
        return out
    return images, masks


def _render_on_cuda(renderer: Renderer, batch, images, masks, batch_size: int, rendered) -> None:
    """Render on the GPU and bring each batch home through two page-locked buffers, one
    batch behind. On an H200 plain (pageable) copies held the renderer to 16,500 images/s
    at 128 px, its kernels alone make 60,000; with these copies it made 25,400
    (bench/results/cuda-h200.md)."""
    n, side = len(images), renderer.size
    if n == 0:  # an empty split
        return
    rows = min(batch_size, n)
    buffers = [
        (
            torch.empty((rows, side, side, 3), dtype=torch.uint8, pin_memory=True),
            torch.empty((rows, side, side), dtype=torch.uint8, pin_memory=True),
            torch.cuda.Event(),
        )
        for _ in range(2)
    ]
    waiting = None  # (start, count, buffer) of the batch whose copy is under way

    def unload(start: int, count: int, buffer) -> None:
        image_buffer, mask_buffer, copied = buffer
        copied.synchronize()
        images[start : start + count] = image_buffer[:count].numpy()
        masks[start : start + count] = mask_buffer[:count].numpy()
        rendered(count)

    for index, start in enumerate(range(0, n, rows)):
        part = {k: v[start : start + rows] for k, v in batch.items()}
        image_t, mask_t = renderer.render(part)
        count = image_t.shape[0]
        buffer = buffers[index % 2]
        buffer[0][:count].copy_(image_t, non_blocking=True)
        buffer[1][:count].copy_(mask_t, non_blocking=True)
        buffer[2].record()
        if waiting is not None:
            unload(*waiting)
        waiting = (start, count, buffer)
    if waiting is not None:
        unload(*waiting)
