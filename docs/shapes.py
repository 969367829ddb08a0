"""An offline ImageFolder for the README's leaderboard: circles, squares, triangles and crosses
of random size, place and colour on random backgrounds (64 x 64 PNG).

    python docs/shapes.py DIR [--train 40] [--test 20]    # prints DIR's absolute path
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "cross", "square", "triangle")
SIZE = 64


def draw(shape: str, rng: np.random.Generator) -> Image.Image:
    background, colour = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2))
    image = Image.new("RGB", (SIZE, SIZE), background)
    d = ImageDraw.Draw(image)
    r = int(rng.integers(10, 24))
    x, y = (int(v) for v in rng.integers(r, SIZE - r, 2))
    if shape == "circle":
        d.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif shape == "square":
        d.rectangle((x - r, y - r, x + r, y + r), fill=colour)
    elif shape == "triangle":
        d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
    else:
        d.rectangle((x - r, y - r // 3, x + r, y + r // 3), fill=colour)
        d.rectangle((x - r // 3, y - r, x + r // 3, y + r), fill=colour)
    return image


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--train", type=int, default=40, help="images per class in train/")
    ap.add_argument("--test", type=int, default=20, help="images per class in test/")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for split, n in (("train", args.train), ("test", args.test)):
        for shape in SHAPES:
            folder = args.dir / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                draw(shape, rng).save(folder / f"{i:03d}.png")
    print(args.dir.resolve())


if __name__ == "__main__":
    main()
