"""Natural photos that ship inside installed packages: the default calibration set and classifier checks.

Only photographs are listed; diagrams, synthetic patterns, scans of text and masks are left out.
Licences: scikit-image's data README (public domain / CC0), matplotlib's sample_data README (Grace Hopper,
public domain), scikit-learn's datasets/images README (china.jpg and flower.jpg, CC BY 2.0).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from edgecnn.util.errors import UsageError


@dataclass(frozen=True)
class PackagedPhotos:
    distribution: str
    module: str
    folder: str  # inside the installed module
    files: tuple[str, ...]

    def paths(self) -> list[Path]:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise UsageError(f"the photos of {self.distribution} need it installed: pip install {self.distribution}")
        folder = Path(spec.origin).parent / self.folder
        paths = [folder / name for name in self.files]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise UsageError(f"{self.distribution}'s {self.folder} lacks {', '.join(missing)}")
        return paths


SKIMAGE = PackagedPhotos(
    "scikit-image",
    "skimage",
    "data",
    (
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "motorcycle_left.png",
        "motorcycle_right.png",
        "hubble_deep_field.jpg",
        "ihc.png",
        "retina.jpg",
        "camera.png",
        "coins.png",
        "moon.png",
        "brick.png",
        "grass.png",
        "gravel.png",
        "clock_motion.png",
    ),
)
MATPLOTLIB = PackagedPhotos("matplotlib", "matplotlib", "mpl-data/sample_data", ("grace_hopper.jpg",))
SCIKIT_LEARN = PackagedPhotos("scikit-learn", "sklearn", "datasets/images", ("china.jpg", "flower.jpg"))
PACKAGES = (SKIMAGE, MATPLOTLIB, SCIKIT_LEARN)


def dependency_photos() -> list[Path]:
    """Every listed photo of every package above (each one must be installed)."""
    return [path for package in PACKAGES for path in package.paths()]
