"""Write zoo/data/probe/: the real photographs and digits the runtime parity gate runs.

The gate (zoo/vision/parity.py) compares a converted model against TensorFlow on real
images, so that a reduced-precision runtime is judged on the inputs it will see, not on
noise. scikit-image and scikit-learn are development dependencies only, so the images
ship with Zoo, small: five photographs at 192 px on the short side (JPEG) and 20
handwritten digits (PNG, one row). Run once; the output is committed.

    python tools/make_probe_images.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent.parent / "zoo" / "data" / "probe"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
SHORT_SIDE = 192
DIGITS_PER_CLASS = 2


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        photo = Image.fromarray(getattr(data, name)()[..., :3])
        scale = SHORT_SIDE / min(photo.size)
        size = (round(photo.width * scale), round(photo.height * scale))
        photo.resize(size, Image.Resampling.LANCZOS).save(OUT / f"{name}.jpg", quality=90)
    digits = load_digits()
    picked = [digits.images[digits.target == d][i] for i in range(DIGITS_PER_CLASS)
              for d in range(10)]
    row = np.concatenate([(image / 16.0 * 255).round().astype(np.uint8) for image in picked],
                         axis=1)
    Image.fromarray(row).save(OUT / "digits.png")
    for path in sorted(OUT.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
