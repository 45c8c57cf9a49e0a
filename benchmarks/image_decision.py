#!/usr/bin/env python
"""What does ``image_mode=auto`` decide? The image-informativeness statistic per slice, DLPFC and synthetic.

Never part of ``make test``. Image features at the CPU defaults (``spatialdomains.image.image_features``:
random-init BYOL ResNet-18 at 64 px, at most 60 steps, PCA 16), then
``spatialdomains.image.image_informativeness`` on the slice prepared for STAIG (its expression and graph):

* DLPFC 151673-151676 (``--data``): the lowres H&E in the files (``uns['spatial']``), or features already
  computed by the pipeline's image step (``--features DIR`` holding ``<slice>.h5ad`` with ``obsm['X_image']``
  written by ``spatialdomains image-features``, matched by barcode);
* synthetic slices of ``benchmarks/image_helps.py`` (weak genes) whose texture does (``informative``) or does
  not (``uninformative``) follow the domains (features reused from ``--features/tissue<t>_<mode>.h5ad`` when
  present).

Usage::

    python benchmarks/image_decision.py                                  # 4 DLPFC + 2 x 2 synthetic
    python benchmarks/image_decision.py --features /tmp/image_step --tissues ""

Writes ``<out>/image_decision.json`` and ``<out>/image_decision.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _reuse(adata, name: str, args, prefix: str = "") -> str | None:
    """``obsm['X_image']`` from ``--features/<name>.h5ad`` (matched by spot name), if that file exists."""
    import anndata as ad

    source = args.features / f"{name}.h5ad" if args.features else None
    if source is None or not source.exists():
        return None
    done = ad.read_h5ad(source)
    by_name = dict(zip([f"{prefix}{b}" for b in done.obs_names], np.asarray(done.obsm["X_image"])))
    adata.obsm["X_image"] = np.stack([by_name[n] for n in adata.obs_names]).astype(np.float32)
    return f"features from {source}"


def dlpfc(sample: str, args):
    from accuracy import load_slice
    from spatialdomains.image import image_features
    from spatialdomains.models import get_method
    from spatialdomains.pp import prepare_group

    adata = prepare_group([load_slice(args.data, sample)], get_method("staig").prep_for(1), platform="visium")
    reused = _reuse(adata, sample, args, prefix=f"{sample}_")
    if reused:
        return adata, reused
    image_features(adata, library_id=sample, device="cpu", random_state=args.seed)
    return adata, "lowres image in the file"


def synthetic_slice(tissue: int, mode: str, args):
    from image_helps import make_prepared
    from spatialdomains.image import image_features

    class Options:
        n_spots, n_domains, n_genes, marker_lfc = 1500, 5, 600, (0.15, 0.45)

    adata = make_prepared(tissue, mode, Options)
    reused = _reuse(adata, f"tissue{tissue}_{mode}", args)
    if reused:
        return adata, reused
    image_features(adata, library_id=f"tissue{tissue}", device="cpu", random_state=args.seed)
    return adata, "synthetic image (hires in the file)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "bench" / "data")
    p.add_argument("--slices", default="151673,151674,151675,151676")
    p.add_argument("--features", type=Path, default=None, help="folder of <slice>.h5ad from image-features")
    p.add_argument("--tissues", default="0,1")
    p.add_argument("--modes", default="informative,uninformative")
    p.add_argument("--seed", type=int, default=0, help="BYOL seed")
    args = p.parse_args(argv)

    from spatialdomains import _logging
    from spatialdomains._utils import write_json_atomic, write_text_atomic
    from spatialdomains.image import INFORMATIVE_THRESHOLD, image_informativeness

    _logging.configure("WARNING")
    warnings.filterwarnings("ignore")
    cases = [("DLPFC", s, lambda s=s: dlpfc(s, args)) for s in args.slices.split(",") if s]
    cases += [(f"synthetic {m}", f"tissue{t}", lambda t=int(t), m=m: synthetic_slice(t, m, args))
              for t in args.tissues.split(",") if t for m in args.modes.split(",") if m]
    rows = []
    for kind, name, build in cases:
        t0 = time.perf_counter()
        adata, source = build()
        stat = next(iter(image_informativeness(adata).values()))
        row = {"data": kind, "slice": name, "features": source, **stat, "image_used": stat["statistic"] >= INFORMATIVE_THRESHOLD,
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "image_decision.json", {"args": {k: str(v) for k, v in vars(args).items()},
                                                         "threshold": INFORMATIVE_THRESHOLD, "rows": rows})
    lines = ["| data | slice | Moran's I image | Moran's I expression | ratio | image_mode=auto |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['slice']} | {r['moran_image']:.3f} | {r['moran_expression']:.3f} | "
                     f"{r['statistic']:.2f} | {'image used' if r['image_used'] else 'not used'} |")
    table = "\n".join(lines)
    write_text_atomic(args.out / "image_decision.md", "# Image decision (image_mode=auto) per slice\n\n"
                      f"Statistic: domain-scale Moran's I of the image features over that of the graph-smoothed "
                      f"expression (spots 4-6 spacings apart); image used when >= {INFORMATIVE_THRESHOLD:g}.\n\n"
                      + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
