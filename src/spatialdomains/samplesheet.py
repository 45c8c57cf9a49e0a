"""Sample-sheet validation: every problem at once, each naming row, column and reason.

The rules live in ``data/schema_input.json`` (JSON Schema draft 2020-12, nf-core shaped, also
``assets/schema_input.json``). The nf-schema extensions it uses (``exists``, ``format: path``,
``uniqueEntries``, ``errorMessage``, ``meta``) are handled here, so the pipeline needs no plugin.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from ._constants import PLATFORMS
from ._utils import InputError

__all__ = ["load_schema", "validate_samplesheet", "SamplesheetError", "Problem", "guess_platform"]

REMOTE_PREFIXES = ("http://", "https://", "ftp://", "s3://", "gs://", "az://")
#: Group names that would collide with the pipeline's own output folders.
RESERVED_GROUPS = ("slices", "pipeline_info", "multiqc", "simulated_input")


@dataclass(frozen=True)
class Problem:
    row: int | None  #: 1-based data row (line number minus the header); None for sheet-wide problems
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where) or 'sample sheet'}: {self.reason}"


class SamplesheetError(InputError):
    """Raised with every problem of a sample sheet listed, one per line."""

    def __init__(self, path: Path, problems: list[Problem]):
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid sample sheet {path} ({len(problems)} problem(s)):\n{lines}")


def load_schema() -> dict[str, Any]:
    return json.loads(files("spatialdomains").joinpath("data/schema_input.json").read_text())


def guess_platform(data: Path) -> str:
    """Best guess of the platform from the data path when the sample sheet leaves it empty."""
    name = data.name.lower()
    if data.is_dir():
        children = {p.name.lower() for p in data.iterdir()}
        if any(c.startswith("square_") for c in children) or name.startswith("square_") or "binned_outputs" in children:
            return "visium_hd"
        if "spatial" in children and any(c.endswith(".h5") for c in children):
            return "visium"
        if "cells.parquet" in children or "cells.csv.gz" in children:
            return "xenium"
        if any("exprmat_file" in c for c in children):
            return "cosmx"
    if name.endswith((".tar.gz", ".tgz")):
        return "visium"
    return "other"


def _data_has_image(data: str, platform: str | None) -> bool:
    """Whether the data carry their own H&E: Space Ranger outputs do, a SpatialData store when it has an
    RGB image element; an .h5ad/.h5 needs the image column."""
    from .io._spatialdata import is_spatialdata_store, spatialdata_rgb_images

    path = Path(data) if data and not data.startswith(REMOTE_PREFIXES) else None
    if path is not None and is_spatialdata_store(path):
        return bool(spatialdata_rgb_images(path))
    return platform == "visium" and not data.endswith((".h5ad", ".h5"))


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.exists():
        raise InputError(f"sample sheet not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    header = [h.strip() for h in (reader.fieldnames or [])]
    rows = []
    for raw in reader:
        extra = raw.pop(None, None)  # more cells than header columns
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        if extra:
            row["__extra__"] = ",".join(extra)
        rows.append(row)
    return header, rows


def _resolve(value: str, base: Path) -> Path | str:
    if value.startswith(REMOTE_PREFIXES):
        return value
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _schema_message(prop: dict[str, Any], default: str) -> str:
    return prop.get("errorMessage", default)


def validate_samplesheet(path: str | Path, *, check_exists: bool = True,
                         base_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Validate a sample sheet and return its rows normalised for the pipeline.

    Relative paths are resolved against ``base_dir`` (default: the sample sheet's folder); empty ``group`` becomes the
    sample id; empty ``platform`` is guessed from the data. Each returned row also carries
    ``has_image`` and ``has_truth``. Raises :class:`SamplesheetError` listing *all* problems.
    """
    from jsonschema import Draft202012Validator

    path = Path(path)
    schema = load_schema()
    item_schema = schema["items"]
    props: dict[str, Any] = item_schema["properties"]
    header, rows = _read_rows(path)
    problems: list[Problem] = []

    known = set(props)
    for col in header:
        if col not in known:
            problems.append(Problem(None, col, f"unknown column (allowed: {', '.join(props)})"))
    for col in item_schema["required"]:
        if col not in header:
            problems.append(Problem(None, col, "required column is missing"))
    if not rows:
        problems.append(Problem(None, None, "no rows: the sample sheet must list at least one slice"))
    if problems and not rows:
        raise SamplesheetError(path, problems)

    validator = Draft202012Validator({**item_schema, "additionalProperties": True})
    base = Path(base_dir).resolve() if base_dir else path.resolve().parent
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        if "__extra__" in row:
            problems.append(Problem(i, None, f"more cells than header columns ({row.pop('__extra__')!r})"))
        values: dict[str, Any] = {k: v for k, v in row.items() if k in known and v != ""}
        if "n_domains" in values:
            try:
                values["n_domains"] = int(values["n_domains"])
            except ValueError:
                problems.append(Problem(i, "n_domains", f"{_schema_message(props['n_domains'], 'not an integer')} "
                                                        f"(got {row['n_domains']!r})"))
                values.pop("n_domains")
        for err in sorted(validator.iter_errors(values), key=lambda e: list(e.path)):
            if err.validator == "required":
                col = err.message.split("'")[1]
                if col in header:
                    problems.append(Problem(i, col, "required value is empty"))
                continue
            col = str(err.path[0]) if err.path else None
            prop = props.get(col or "", {})
            problems.append(Problem(i, col, f"{_schema_message(prop, err.message)} (got {values.get(col)!r})"))
        sample = values.get("sample")
        if sample:
            if sample in seen:
                problems.append(Problem(i, "sample", f"duplicate sample id {sample!r} (first seen in row {seen[sample]})"))
            else:
                seen[sample] = i
        resolved: dict[str, Any] = {}
        for col in ("data", "image"):
            if col not in values:
                continue
            target = _resolve(values[col], base)
            resolved[col] = str(target)
            if check_exists and isinstance(target, Path) and not target.exists():
                problems.append(Problem(i, col, f"file not found: {target}"))
        truth = values.get("truth")
        if truth and any(truth.endswith(ext) for ext in (".csv", ".tsv", ".txt")):
            target = _resolve(truth, base)
            if check_exists and isinstance(target, Path) and not target.exists():
                problems.append(Problem(i, "truth", f"truth file not found: {target}"))
            truth = str(target)
        platform = values.get("platform")
        if not platform and isinstance(resolved.get("data"), str) and Path(resolved["data"]).exists():
            platform = guess_platform(Path(resolved["data"]))
        out.append({
            "sample": sample or "",
            "group": values.get("group") or sample or "",
            "data": resolved.get("data", ""),
            "image": resolved.get("image", ""),
            "platform": platform or "other",
            "truth": truth or "",
            "n_domains": values.get("n_domains", ""),
            "has_image": bool(resolved.get("image")) or _data_has_image(resolved.get("data", ""), platform),
            "has_truth": bool(truth),
        })

    groups: dict[str, list[int]] = {}
    for i, r in enumerate(out, start=1):
        groups.setdefault(r["group"], []).append(i)
    for group, members in groups.items():
        if group in RESERVED_GROUPS:
            problems.append(Problem(members[0], "group", f"group name {group!r} is reserved for the pipeline's "
                                                         f"output folders ({', '.join(RESERVED_GROUPS)})"))
        ks = {out[m - 1]["n_domains"] for m in members if out[m - 1]["n_domains"] != ""}
        if len(ks) > 1:
            problems.append(Problem(members[0], "n_domains",
                                    f"slices of group {group!r} (rows {', '.join(map(str, members))}) disagree on "
                                    f"n_domains {sorted(ks)}; a group is clustered jointly with one K"))
        if group in seen and seen[group] not in members:
            problems.append(Problem(members[0], "group", f"group {group!r} is also the sample id of row {seen[group]} "
                                                         "in another group; use distinct names"))
    if problems:
        raise SamplesheetError(path, problems)
    assert all(r["platform"] in PLATFORMS for r in out)
    return out


def write_validated(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Write the normalised rows as CSV (the pipeline parses this file, not the user's)."""
    from ._utils import atomic_path

    cols = ["sample", "group", "data", "image", "platform", "truth", "n_domains", "has_image", "has_truth"]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            for r in rows:
                writer.writerow({c: str(r[c]).lower() if isinstance(r[c], bool) else r[c] for c in cols})
