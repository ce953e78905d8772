"""FG-Net sizes as data: one model class, many sizes (full release, tiny test preset, ablations).

Feature levels are the generator resolutions 4, 8, ..., `resolution`; level i has
resolution 2**(i+2). Their groups follow the paper's ablation:

- early:  the first three levels (4, 8, 16),
- late:   levels finer than the heatmaps (256, 512, 1024 for the release),
- middle: the levels in between (32, 64, 128).

A level whose group is switched off is not added into the interpreter; levels
finer than every selected one are not computed at all.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from fgnet_video.errors import UserError

FEATURE_GROUPS = ("early", "middle", "late")


@dataclass(frozen=True)
class FGNetConfig:
    """Every size FG-Net's modules are built from.

    image_size: side of the encoder's input (the aligned face).
    encoder_widths / encoder_units: IR-SE stage widths and blocks per stage
        (IR-SE-50: 64/128/256/512 with 3/4/14/3 blocks).
    style_dim, n_mlp, lr_mlp: W space size, mapping depth, mapping lr multiplier.
    resolution: generator output side; generator_channels[i] is the width at level i.
    heatmap_size, n_heatmaps, head_width: interpreter output side, channels, and
        width of its last hidden block.
    features: the selected feature groups.
    """

    image_size: int = 256
    encoder_widths: tuple[int, ...] = (64, 128, 256, 512)
    encoder_units: tuple[int, ...] = (3, 4, 14, 3)
    style_dim: int = 512
    n_mlp: int = 8
    lr_mlp: float = 0.01
    resolution: int = 1024
    generator_channels: tuple[int, ...] = (512, 512, 512, 512, 512, 256, 128, 64, 32)
    heatmap_size: int = 128
    n_heatmaps: int = 32
    head_width: int = 32
    dropout: float = 0.1
    features: tuple[str, ...] = field(default=FEATURE_GROUPS)

    def __post_init__(self) -> None:
        unknown = [g for g in self.features if g not in FEATURE_GROUPS]
        if unknown or not self.features:
            raise UserError(
                f"feature groups must be a non-empty subset of {', '.join(FEATURE_GROUPS)};"
                f" got {', '.join(self.features) or 'none'}"
            )
        log_res = math.log2(self.resolution)
        if log_res != int(log_res) or self.resolution < 16:
            raise UserError(
                f"generator resolution must be a power of two >= 16, not {self.resolution}")
        if len(self.generator_channels) != self.n_levels:
            raise UserError(
                f"generator_channels needs {self.n_levels} widths for resolution {self.resolution}"
            )
        if self.heatmap_size not in self.level_resolutions:
            raise UserError(f"heatmap_size {self.heatmap_size} is not a generator level resolution")
        if len(self.encoder_widths) != 4 or len(self.encoder_units) != 4:
            raise UserError("the IR-SE encoder has exactly four stages")
        if self.image_size % 32:
            raise UserError(f"image_size must be a multiple of 32, not {self.image_size}")

    # -- derived sizes -------------------------------------------------------------
    @property
    def n_levels(self) -> int:
        """Number of generator feature levels (9 for 1024 px)."""
        return int(math.log2(self.resolution)) - 1

    @property
    def n_styles(self) -> int:
        """Number of W+ vectors the synthesis network reads (18 for 1024 px)."""
        return 2 * int(math.log2(self.resolution)) - 2

    @property
    def level_resolutions(self) -> tuple[int, ...]:
        return tuple(2 ** (i + 2) for i in range(self.n_levels))

    def level_group(self, level: int) -> str:
        """The ablation group ('early', 'middle', 'late') of feature level `level`."""
        if level < 3:
            return "early"
        if self.level_resolutions[level] > self.heatmap_size:
            return "late"
        return "middle"

    @property
    def used_levels(self) -> tuple[bool, ...]:
        """For each level, whether its feature is added into the interpreter."""
        return tuple(self.level_group(i) in self.features for i in range(self.n_levels))

    @property
    def computed_levels(self) -> int:
        """How many generator levels must run: up to the heatmap level and the finest used one."""
        heatmap_level = self.level_resolutions.index(self.heatmap_size)
        finest_used = max(i for i, used in enumerate(self.used_levels) if used)
        return max(heatmap_level, finest_used) + 1

    # -- (de)serialisation ---------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FGNetConfig:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)

    def with_features(self, features: tuple[str, ...] | list[str] | str) -> FGNetConfig:
        """The same sizes with another feature-group selection ('early,middle' or a list)."""
        if isinstance(features, str):
            features = tuple(f.strip() for f in features.split(",") if f.strip())
        return replace(self, features=tuple(features))


FULL = FGNetConfig()

# A few-megabyte FG-Net whose forward pass takes milliseconds on CPU: tests, benchmarks of
# the pipeline, and training smoke runs. Levels 4..128; heatmaps at 32, so 64 and 128 are "late".
TINY = FGNetConfig(
    image_size=64,
    encoder_widths=(16, 32, 48, 64),
    encoder_units=(1, 1, 2, 1),
    style_dim=32,
    n_mlp=2,
    resolution=128,
    generator_channels=(32, 32, 32, 16, 16, 8),
    heatmap_size=32,
    n_heatmaps=32,
    head_width=8,
)

PRESETS: dict[str, FGNetConfig] = {"full": FULL, "tiny": TINY}


def preset(name: str) -> FGNetConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None
