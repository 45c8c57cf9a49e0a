#!/usr/bin/env python
"""Regenerate assets/demo/: 2 synthetic Visium-like slices (1 group), H&E-like images, truth, a GMT.

Sized to stay under 5 MB in git: 500 genes, 1,500 spots per slice, 1,600 px JPEG images, counts in X
only (readers take counts from X when layers['counts'] is absent).

    .venv/bin/python scripts/make_demo_data.py
"""

from pathlib import Path

from spatialdomains.synthetic import simulate_to_dir

OUT = Path(__file__).resolve().parents[1] / "assets" / "demo"

if __name__ == "__main__":
    for old in OUT.glob("*"):
        if old.is_file():
            old.unlink()
    sheet = simulate_to_dir(OUT, n_spots=1500, n_slices=2, n_domains=5, n_genes=500, image=True, random_state=0,
                            pattern="layers", layout="visium", batch_effect=0.3, group="demo", platform="visium",
                            gmt=True, image_format="jpg", image_size=1600, counts_layer=False)
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{sheet} ({total / 1e6:.2f} MB)")
