"""Where the eight rounded blocks of a Two4Two scene are, as rigid poses in world space.

World frame as in Two4Two's Blender scene: the camera sits at (9, 0, 0) looking along -X,
+Y points right on screen and +Z up. A block is a rounded box (half edge ``half``, corner
radius ``radius``) posed by a rotation ``R`` (local -> world) and a center ``c``:
``p_world = R @ p_local + c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BLOCK_NAMES = (
    "arm_left_top",
    "arm_left_bottom",
    "spine_left",
    "spine_left_center",
    "spine_right_center",
    "spine_right",
    "arm_right_top",
    "arm_right_bottom",
)
# Block centers before bending; the right arms also move by +arm_position along Y.
BASE_CENTERS = (
    (0.0, -1.5, 1.0),
    (0.0, -1.5, -1.0),
    (0.0, -1.0, 0.0),
    (0.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 2.0, 0.0),
    (0.0, 1.5, 1.0),
    (0.0, 1.5, -1.0),
)
RIGHT_ARMS = (6, 7)
# Two4Two's two armatures start at the spine's middle (y = 0.5), one bending each half.
MIDDLE_JOINT_Y = 0.5
LEFT_CENTER, RIGHT_CENTER = 3, 4
LEFT_OUTER, RIGHT_OUTER = (0, 1, 2), (5, 6, 7)


@dataclass(frozen=True)
class Calibration:
    """Constants fitted to the Two4Two reference masks (see docs/renderer.md)."""

    # Two4Two bevels each cube and subdivides it five times, which rounds even a cube;
    # as a rounded box: radius / half edge = clamp(round_base + round_slope * spherical, 0, 1)
    round_base: float = 0.3
    round_slope: float = 0.75
    size_scale: float = 0.96  # half edge / Two4Two's (0.8 + 0.1 * spherical) / 2
    # bone turns per unit of bending (Two4Two's BoneRotation.from_bending: b/2 and b), and
    # the share of the second bone's turn that the center block between both bones follows
    bend_center: float = 0.5
    bend_outer: float = 1.0
    center_block_share: float = 0.5
    # Blender's rotate operator turns by -value about its axis
    roll_sign: float = -1.0
    pitch_sign: float = -1.0
    yaw_sign: float = -1.0


DEFAULT_CALIBRATION = Calibration()


@dataclass
class BlockPoses:
    """Posed blocks of a batch of N scenes.

    centers: (N, 8, 3), rotations: (N, 8, 3, 3) local -> world, half: (N,) half edge,
    radius: (N,) corner radius (radius == half is a sphere).
    """

    centers: torch.Tensor
    rotations: torch.Tensor
    half: torch.Tensor
    radius: torch.Tensor

    def extents(self) -> torch.Tensor:
        """Half sizes (N, 8, 3) of each block's world axis-aligned bounding box."""
        core = (self.half - self.radius)[:, None, None].expand(-1, 8, 3)
        return (self.rotations.abs() @ core[..., None])[..., 0] + self.radius[:, None, None]

    def bounding_radius(self) -> torch.Tensor:
        """Radius (N,) of the sphere around the block center enclosing the block."""
        return (self.half - self.radius) * 3**0.5 + self.radius


def axis_rotation(angle: torch.Tensor, axis: int) -> torch.Tensor:
    """Right-handed rotation matrices (..., 3, 3) by ``angle`` (...) about world ``axis``."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    rows = [[zero, zero, zero] for _ in range(3)]
    rows[axis][axis] = one
    rows[i][i], rows[i][j], rows[j][i], rows[j][j] = c, -s, s, c
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def _bounds_center(poses: BlockPoses) -> torch.Tensor:
    """Center (N, 3) of the world axis-aligned bounding box of all eight blocks."""
    extents = poses.extents()
    low = (poses.centers - extents).amin(1)
    high = (poses.centers + extents).amax(1)
    return (low + high) / 2


def _half_center(poses: BlockPoses) -> None:
    """Two4Two's ``center()``: it moves the object by minus *half* its bounding-box center."""
    poses.centers = poses.centers - 0.5 * _bounds_center(poses)[:, None]


def _turn(centers, rotations, members, pivot, angle):
    """Rotate blocks ``members`` about X through ``pivot`` (N, 3) by ``angle`` (N,)."""
    turn = axis_rotation(angle, 0)  # (N, 3, 3)
    idx = list(members)
    rel = centers[:, idx] - pivot[:, None]
    centers[:, idx] = (turn[:, None] @ rel[..., None])[..., 0] + pivot[:, None]
    rotations[:, idx] = turn[:, None] @ rotations[:, idx]


def _bend(centers, rotations, bending, cal: Calibration, offset) -> None:
    """Bend the skeleton in place, as Two4Two's two armatures do.

    Each half of the spine hangs on a bone from the middle joint (0, 0.5, 0) to its center
    block, turned by -+bending/2, and a bone from there to its outer block, turned by a
    further -+bending (the arms follow their outer block). The center block sits on that
    second joint, so its vertices are shared between both bones: it keeps its center and
    turns by part of the second bone's angle. ``centers`` (N, 8, 3), ``rotations``
    (N, 8, 3, 3), ``bending`` (N,), ``offset`` (N, 3) where the skeleton has been moved.
    """

    def joint(y):
        return offset + torch.tensor([0.0, y, 0.0], dtype=centers.dtype, device=centers.device)

    middle = joint(MIDDLE_JOINT_Y)
    for sign, center_block, outer_blocks in (
        (1.0, LEFT_CENTER, LEFT_OUTER),
        (-1.0, RIGHT_CENTER, RIGHT_OUTER),
    ):
        first = sign * cal.bend_center * bending
        second = sign * cal.bend_outer * bending
        _turn(centers, rotations, (center_block, *outer_blocks), middle, first)
        outer_joint = centers[:, center_block]  # the second bone starts in the center block
        _turn(centers, rotations, outer_blocks, outer_joint, second)
        own = axis_rotation(cal.center_block_share * second, 0)
        rotations[:, center_block] = own @ rotations[:, center_block]


def block_poses(
    batch: dict[str, torch.Tensor], calibration: Calibration = DEFAULT_CALIBRATION
) -> BlockPoses:
    """Pose the eight blocks of every scene of ``batch`` (dict of (N,) float tensors)."""
    cal = calibration
    spherical = batch["spherical"]
    n, device, dtype = spherical.shape[0], spherical.device, spherical.dtype
    half = (0.8 + 0.1 * spherical) / 2 * cal.size_scale
    radius = half * (cal.round_base + cal.round_slope * spherical).clamp(0.0, 1.0)

    centers = torch.tensor(BASE_CENTERS, device=device, dtype=dtype).repeat(n, 1, 1)
    centers[:, RIGHT_ARMS, 1] += batch["arm_position"][:, None]
    rotations = torch.eye(3, device=device, dtype=dtype).repeat(n, 8, 1, 1)
    # Two4Two centers the still square blocks once before bending (see _half_center)
    cube = BlockPoses(centers, rotations, half / cal.size_scale, torch.zeros_like(half))
    offset = -0.5 * _bounds_center(cube)
    centers = centers + offset[:, None]
    _bend(centers, rotations, batch["bending"], cal, offset)
    poses = BlockPoses(centers, rotations, half, radius)
    _half_center(poses)
    for name, axis, sign in (
        ("obj_rotation_roll", 1, cal.roll_sign),
        ("obj_rotation_pitch", 2, cal.pitch_sign),
        ("obj_rotation_yaw", 0, cal.yaw_sign),
    ):
        # Blender turns the object about the center of its bounding box
        pivot = _bounds_center(poses)[:, None]
        turn = axis_rotation(sign * batch[name], axis)[:, None]
        poses.centers = (turn @ (poses.centers - pivot)[..., None])[..., 0] + pivot
        poses.rotations = turn @ poses.rotations
    _half_center(poses)
    zeros = torch.zeros_like(spherical)
    shift = torch.stack([zeros, batch["position_x"], batch["position_y"]], -1)
    poses.centers = poses.centers + shift[:, None]
    return poses
