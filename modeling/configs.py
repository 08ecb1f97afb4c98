"""Named model configurations: architecture and training settings in one dataclass.

Two architectures train through the same command: ``invertible`` (the Glow-style
flow with a linear head, the default) and ``resnet`` (a torchvision ResNet-18 layout).
``cpu-small`` trains the flow on two CPU cores in minutes (the demo), ``cpu-study`` in
about 35 minutes for a study without a GPU; ``paper`` is the network of the ICLR 2022
study (128 px, 7 stages of 32 steps, classifier on the 768-channel final latent).
``resnet-cpu`` and ``resnet-gpu`` are the ResNet's counterparts of ``cpu-small`` and
``paper``. A TOML file with the same keys defines others::

    name = "my-model"
    input_size = 64
    blocks_per_stage = [2, 2, 4]
    coupling_widths = [16, 32, 64]
    epochs = 10

    # or a ResNet:
    name = "my-resnet"
    architecture = "resnet"
    input_size = 64
    resnet_width = 32
    epochs = 4

A setting of one architecture given for the other is an error naming it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from xaistudy.errors import UserError

ArchitectureName = Literal["invertible", "resnet"]
ARCHITECTURE_NAMES: tuple[str, ...] = get_args(ArchitectureName)
# The network class of each architecture, as the model card names it.
MODEL_CLASSES: dict[str, str] = {"invertible": "InvertibleClassifier", "resnet": "ResNetClassifier"}
# The ResNet-18 layout: BasicBlocks per residual layer (layer1 .. layer4).
RESNET_BLOCKS = (2, 2, 2, 2)

_REQUIRED = object()


def only_for(architecture: ArchitectureName, default: Any = _REQUIRED) -> Any:
    """A setting that means something for one architecture only.

    It stays ``None`` for the other architecture (where setting it is an error) and takes
    ``default`` for its own when not given; without a default its own needs it given.
    """
    return field(default=None, metadata={"architecture": architecture, "default": default})


def architecture_fields(architecture: str) -> list[str]:
    """The names of the settings that belong to ``architecture`` only."""
    return [
        f.name
        for f in dataclasses.fields(ModelConfig)
        if f.metadata.get("architecture") == architecture
    ]


def required_fields(architecture: str) -> list[str]:
    """The settings ``architecture`` cannot do without (besides ``name`` and ``input_size``)."""
    return [
        f.name
        for f in dataclasses.fields(ModelConfig)
        if f.metadata.get("architecture") == architecture and f.metadata["default"] is _REQUIRED
    ]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and training settings of one model under study.

    ``architecture = "invertible"``: stage ``i`` squeezes its input, applies
    ``blocks_per_stage[i]`` flow steps with coupling networks ``coupling_widths[i]``
    wide, then (except the last stage) splits off half of its channels as a latent. The
    linear classifier reads the latent of ``classifier_stage`` (``-1``: the final latent).

    ``architecture = "resnet"``: torchvision's ResNet with the ResNet-18 layout (two
    BasicBlocks in each of four residual layers), ``resnet_width`` channels in layer1 and
    twice as many in each following layer (64 is ResNet-18 itself); see
    ``modeling/resnet.py`` for the stem.

    The settings of one architecture are ``None`` for the other: ``None`` there means
    "does not apply", never "use a default".
    """

    name: str
    input_size: int
    architecture: ArchitectureName = "invertible"
    # -- the invertible network's own settings ----------------------------------------
    blocks_per_stage: tuple[int, ...] | None = only_for("invertible")
    coupling_widths: tuple[int, ...] | None = only_for("invertible")
    classifier_stage: int | None = only_for("invertible", -1)
    # one weight per channel, shared over positions
    classifier_pooling: bool | None = only_for("invertible", False)
    scale_bound: float | None = only_for("invertible", 2.0)
    # loss = nll_weight * bits/dim + bce_weight * binary cross-entropy
    nll_weight: float | None = only_for("invertible", 1.0)
    bce_weight: float | None = only_for("invertible", 1.0)
    # The head latent's prior: two unit Gaussians, one per class, whose log-odds is the
    # classifier's logit (a Gaussian-mixture flow), instead of one standard normal. The
    # likelihood then holds the class information along the classifier's direction only.
    class_conditional_prior: bool | None = only_for("invertible", False)
    # the classifier's learning rate is learning_rate times this: a linear head that
    # learns fast keeps the flow from inflating its latent to reach confident logits
    classifier_lr_scale: float | None = only_for("invertible", 1.0)
    # -- the ResNet's own settings ------------------------------------------------------
    # channels of layer1 (layer2, 3, 4 have 2, 4, 8 times as many); 64 is ResNet-18
    resnet_width: int | None = only_for("resnet", 64)
    # -- shared by both -----------------------------------------------------------------
    label_noise: float = 0.0  # probability of flipping each training label
    augment_flip: bool = True  # mirror training images at random (fliplr is not the label)
    # shift training images by up to this many pixels (edges replicated): position is
    # not the label, so the classifier should not depend on where the object stands
    augment_shift: int = 0
    # rotate training images by a random multiple of 90 degrees: the object's in-plane
    # rotation (yaw) is uniform, so the class does not depend on the orientation
    augment_rot90: bool = False
    # Pairs: with a weight > 0 every step trains on training scenes and their partners of
    # the dataset's train_pairs split (the same scenes with the factors that do not carry
    # the class redrawn, `xaistudy generate --train-pairs`), and adds this weight times the
    # share of the logits' variance that the pairs' differences explain
    # (training.pair_figures): the model learns not to decide by what the data never tied
    # to the class. batch_size counts scenes; the first pair_fraction
    # of each step's scenes bring their partner (1: a step takes twice as many images).
    invariance_weight: float = 0.0
    pair_fraction: float = 1.0
    epochs: int = 10
    batch_size: int = 64
    # The batch on a CUDA GPU; None: batch_size, so that a recipe tuned on the CPU (its
    # steps, learning rate, warm-up) trains the same model on a GPU.
    cuda_batch_size: int | None = None
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 50.0
    # bfloat16 where the device computes it faster (a CUDA GPU, a CPU with AMX;
    # training.native_bfloat16), while training only: the flow's coupling networks, the
    # ResNet's whole forward pass. Evaluation, inversion and explanations always run in
    # float32 or wider.
    mixed_precision: bool = True
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURE_NAMES:
            raise UserError(
                f"config {self.name!r}: architecture {self.architecture!r} is unknown; "
                f"allowed are {', '.join(ARCHITECTURE_NAMES)}"
            )
        self._settle_architecture_fields()
        if self.architecture == "invertible":
            object.__setattr__(
                self, "blocks_per_stage", tuple(int(b) for b in self.blocks_per_stage)
            )
            object.__setattr__(self, "coupling_widths", tuple(int(w) for w in self.coupling_widths))
        self.validate()

    def _settle_architecture_fields(self) -> None:
        """Fill in this architecture's defaults; refuse the other architecture's settings."""
        for f in dataclasses.fields(self):
            owner = f.metadata.get("architecture")
            if owner is None:
                continue
            value = getattr(self, f.name)
            if owner != self.architecture:
                if value is not None:
                    own = ", ".join(architecture_fields(self.architecture))
                    raise UserError(
                        f"config {self.name!r}: {f.name} is a setting of the {owner} "
                        f"architecture, not of {self.architecture!r}; remove it (the "
                        f"{self.architecture} architecture's own settings are: {own})"
                    )
            elif value is None:
                if f.metadata["default"] is _REQUIRED:
                    raise UserError(
                        f"config {self.name!r}: the {owner} architecture needs {f.name}"
                    )
                object.__setattr__(self, f.name, f.metadata["default"])

    @property
    def num_stages(self) -> int:
        """Stages of the flow; residual layers of the ResNet (layer1 .. layer4)."""
        if self.architecture == "resnet":
            return len(RESNET_BLOCKS)
        return len(self.blocks_per_stage)

    @property
    def resolved_classifier_stage(self) -> int:
        """The flow stage whose latent the classifier reads, counted from 0."""
        return self.classifier_stage % self.num_stages

    def validate(self) -> None:
        if self.architecture == "invertible":
            self._validate_flow()
        else:
            self._validate_resnet()
        if not 0 <= self.augment_shift < self.input_size // 2:
            raise UserError(
                f"config {self.name!r}: augment_shift must be in 0..{self.input_size // 2 - 1}"
            )
        if self.invariance_weight < 0:
            raise UserError(f"config {self.name!r}: invariance_weight must be >= 0")
        if not 0 < self.pair_fraction <= 1:
            raise UserError(f"config {self.name!r}: pair_fraction must be in (0, 1]")
        if not 0.0 <= self.label_noise < 0.5:
            raise UserError(f"config {self.name!r}: label_noise must be in [0, 0.5)")
        for key in ("epochs", "batch_size", "cuda_batch_size"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise UserError(f"config {self.name!r}: {key} must be at least 1")
        if self.learning_rate <= 0:
            raise UserError(f"config {self.name!r}: learning_rate must be > 0")

    def batch_size_on(self, device) -> int:
        """The batch of one training step on ``device`` (a ``torch.device``)."""
        if device.type == "cuda" and self.cuda_batch_size is not None:
            return self.cuda_batch_size
        return self.batch_size

    def _validate_flow(self) -> None:
        stages = self.num_stages
        if stages < 1:
            raise UserError(f"config {self.name!r}: blocks_per_stage must name at least one stage")
        if len(self.coupling_widths) != stages:
            raise UserError(
                f"config {self.name!r}: coupling_widths has {len(self.coupling_widths)} entries "
                f"but blocks_per_stage has {stages}; give one width per stage"
            )
        if any(b < 1 for b in self.blocks_per_stage) or any(w < 1 for w in self.coupling_widths):
            raise UserError(f"config {self.name!r}: blocks and widths must be positive")
        if self.input_size < 2**stages or self.input_size % 2**stages:
            raise UserError(
                f"config {self.name!r}: input_size {self.input_size} must be a multiple of "
                f"2**{stages} (one squeeze per stage)"
            )
        if not -stages <= self.classifier_stage < stages:
            raise UserError(
                f"config {self.name!r}: classifier_stage {self.classifier_stage} is out of "
                f"range: allowed is {-stages}..{stages - 1}"
            )
        if self.scale_bound <= 0 or self.classifier_lr_scale <= 0:
            raise UserError(
                f"config {self.name!r}: classifier_lr_scale and scale_bound must be > 0"
            )
        if self.nll_weight < 0 or self.bce_weight < 0 or self.nll_weight + self.bce_weight == 0:
            raise UserError(f"config {self.name!r}: loss weights must be >= 0, not both 0")

    def _validate_resnet(self) -> None:
        if self.resnet_width < 1:
            raise UserError(f"config {self.name!r}: resnet_width must be at least 1")
        # layer4 is the stem's stride times 8 smaller than the input (three stride-2
        # layers follow the stem): it must come out a whole number of pixels
        layer4_divisor = 8 * resnet_stem_stride(self.input_size)
        if self.input_size % layer4_divisor:
            raise UserError(
                f"config {self.name!r}: input_size {self.input_size} does not suit the "
                "resnet: allowed are multiples of 16 below 128 px (64 is the usual) and "
                "multiples of 32 from 128 px"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON; those of the other architecture are left out."""
        data = dataclasses.asdict(self)
        for architecture in ARCHITECTURE_NAMES:
            if architecture != self.architecture:
                for name in architecture_fields(architecture):
                    del data[name]
        for name in ("blocks_per_stage", "coupling_widths"):
            if name in data:
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(
                f"{source}: unknown key(s) {', '.join(unknown)}; "
                f"allowed are {', '.join(sorted(known))}"
            )
        architecture = data.get("architecture", "invertible")
        needed = ["name", "input_size"]
        if architecture in ARCHITECTURE_NAMES:  # an unknown one is named by the constructor
            needed += required_fields(architecture)
        missing = [k for k in needed if k not in data]
        if missing:
            raise UserError(f"{source}: missing key(s) {', '.join(missing)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise UserError(f"{source}: {exc}") from exc


def resnet_stem_stride(input_size: int) -> int:
    """How much the ResNet's stem shrinks the image: 2 below 128 px, 4 from 128 px.

    Either way layer3 (the default concept layer) is 8 x 8 at the usual sizes (64 px and
    128 px), like the flow's third stage at 64 px.
    """
    return 2 if input_size < 128 else 4


CPU_SMALL = ModelConfig(
    name="cpu-small",
    input_size=64,
    blocks_per_stage=(2, 2, 4, 4),
    # Wide couplings at 32 x 32 and 16 x 16 are what let the flow see the arms: with
    # widths 16 and 32 there it learns the shape and color shortcuts and stalls near
    # 0.78.
    coupling_widths=(32, 48, 64, 96),
    # A weight for every position of the 96 x 4 x 4 latent, not one shared over the 16
    # positions: a shared weight moves every position alike, so a counterfactual repaints
    # the background with the object (the probe saw the background color change along
    # the rows with R^2 0.86, the arms 0.04); per position it changes the object, the
    # arms most (R^2 0.82, background 0.20), for 2.5 points of accuracy.
    classifier_pooling=False,
    # Likelihood first, as in the study's network: the classifier's weight is 1, not
    # 10, and a tenth of the labels are flipped, which caps the logits near +-2.2. A
    # weight of 5 gains 2 points of accuracy and makes the counterfactuals noise
    # (12 % of pixel values clipped instead of 0.4 %; docs/model.md has the runs).
    nll_weight=1.0,
    bce_weight=1.0,
    label_noise=0.1,
    scale_bound=0.7,
    # Shifts of up to 4 px. 90-degree turns and 8 px shifts did not make the model
    # less sensitive to rotation or position and cost counterfactual quality.
    augment_shift=4,
    # Four passes over 40,000 scenes (the demo's dataset) rather than many over few:
    # nothing to memorize, and 0.905 test accuracy in about five and a half minutes.
    epochs=4,
    batch_size=48,
    learning_rate=8.5e-4,
    warmup_steps=50,
    description="64 px, trains on two CPU cores in about six minutes (40,000 scenes)",
)

CONFIGS: dict[str, ModelConfig] = {
    "cpu-small": CPU_SMALL,
    # cpu-small with half as many steps again at the same widths (350 instead of 545
    # training images/s on two cores) and four passes over 160,000 scenes: about 35
    # minutes on two CPU cores.
    "cpu-study": dataclasses.replace(
        CPU_SMALL,
        name="cpu-study",
        blocks_per_stage=(3, 3, 6, 6),
        warmup_steps=200,
        description="64 px, for a study without a GPU: about 35 minutes on two CPU cores "
        "(160,000 scenes)",
    ),
    "paper": ModelConfig(
        name="paper",
        input_size=128,
        blocks_per_stage=(32,) * 7,
        coupling_widths=(48, 128, 384, 512, 512, 512, 512),
        # The study's balance: likelihood first, labels flipped with probability 0.1.
        nll_weight=1.0,
        bce_weight=1.0,
        label_noise=0.1,
        epochs=40,
        batch_size=16,
        cuda_batch_size=64,
        learning_rate=5e-4,
        warmup_steps=1000,
        description="the ICLR 2022 study's network: 128 px, 7 x 32 steps, for a GPU",
    ),
    "resnet-cpu": ModelConfig(
        name="resnet-cpu",
        architecture="resnet",
        input_size=64,
        # ResNet-18 at half width (32, 64, 128, 256 channels): 2.8 M parameters, 530 to
        # 570 training images/s on two cores in bfloat16 where width 64 makes 170. Four
        # passes over 40,000 scenes: 0.977 test accuracy in 322 s (docs/model.md).
        resnet_width=32,
        # The flow's label noise, so that both models learn from the same labels and
        # neither is pushed to extreme logits.
        label_noise=0.1,
        augment_shift=4,
        epochs=4,
        batch_size=64,
        learning_rate=2e-3,
        warmup_steps=100,
        description="a ResNet-18 at half width, 64 px: trains on two CPU cores in about "
        "six minutes (40,000 scenes)",
    ),
    "resnet-gpu": ModelConfig(
        name="resnet-gpu",
        architecture="resnet",
        input_size=128,
        resnet_width=64,  # torchvision's resnet18 itself, with one output
        label_noise=0.1,
        augment_shift=8,
        epochs=20,
        batch_size=64,
        cuda_batch_size=256,
        learning_rate=1e-3,
        warmup_steps=500,
        description="ResNet-18, 128 px: the counterpart of paper, for a GPU",
    ),
}


def load_config(spec: str | Path) -> ModelConfig:
    """A config by name (``cpu-small``, ``paper``) or from a TOML file path."""
    spec_str = str(spec)
    if spec_str in CONFIGS:
        return CONFIGS[spec_str]
    path = Path(spec_str)
    if path.suffix != ".toml" or not path.is_file():
        raise UserError(
            f"unknown config {spec_str!r}: allowed are {', '.join(CONFIGS)} or a .toml file"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from exc
    data.setdefault("name", path.stem)
    return ModelConfig.from_dict(data, source=str(path))
