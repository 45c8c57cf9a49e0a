"""Checks shared by `make lint` (scripts/lint.py) and the tests (tests/unit/test_lint.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path


def check_json_schemas(root: Path) -> list[str]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    problems = []
    for rel in ("assets/schema_input.json", "nextflow_schema.json"):
        path = root / rel
        if not path.exists():
            if rel == "nextflow_schema.json" and not (root / "main.nf").exists():
                continue
            problems.append(f"{rel} is missing")
            continue
        try:
            Draft202012Validator.check_schema(json.loads(path.read_text()))
        except (SchemaError, json.JSONDecodeError) as err:
            problems.append(f"{rel} is not a valid JSON Schema: {str(err).splitlines()[0]}")
    packaged = root / "src/spatialdomains/data/schema_input.json"
    if (root / "assets/schema_input.json").read_text() != packaged.read_text():
        problems.append("assets/schema_input.json differs from src/spatialdomains/data/schema_input.json")
    return problems


def nextflow_bin(root: Path) -> str | None:
    venv = root / ".venv/bin/nextflow"
    return str(venv) if venv.exists() else shutil.which("nextflow")


def schema_params(root: Path) -> dict[str, object]:
    schema = json.loads((root / "nextflow_schema.json").read_text())
    out = {}
    for group in schema.get("$defs", {}).values():
        for name, prop in group.get("properties", {}).items():
            out[name] = prop.get("default")
    for name, prop in schema.get("properties", {}).items():
        out[name] = prop.get("default")
    return out


def config_params(root: Path) -> dict[str, object]:
    """``params.*`` from ``nextflow config -flat`` (default profile), as Python values."""
    nf = nextflow_bin(root)
    env = {**os.environ, "NXF_OFFLINE": "true", "NXF_ANSI_LOG": "false"}
    out = subprocess.run([nf, "config", "-flat", str(root)], capture_output=True, text=True, env=env, check=True,
                         cwd=root).stdout
    params = {}
    for line in out.splitlines():
        m = re.match(r"^params\.(\w+) = (.*)$", line.strip())
        if m:
            params[m.group(1)] = _groovy_value(m.group(2))
    return params


def _groovy_value(text: str):
    text = text.strip()
    if text in ("null",):
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def check_params_match(root: Path) -> list[str]:
    if not (root / "nextflow.config").exists():
        return []
    if nextflow_bin(root) is None:
        return ["nextflow not found: run make setup"]
    schema = schema_params(root)
    config = config_params(root)
    problems = []
    for name in sorted(set(config) - set(schema)):
        problems.append(f"params.{name} is in nextflow.config but not in nextflow_schema.json")
    for name in sorted(set(schema) - set(config)):
        problems.append(f"'{name}' is in nextflow_schema.json but not in nextflow.config params")
    for name in sorted(set(schema) & set(config)):
        a, b = schema[name], config[name]
        if a != b and not (a in (None, "") and b in (None, "")) and str(a) != str(b):
            problems.append(f"default of '{name}' differs: schema {a!r} vs nextflow.config {b!r}")
    return problems


def check_dockerfiles(root: Path) -> list[str]:
    problems = []
    files = sorted((root / "containers").glob("*/Dockerfile"))
    hadolint = shutil.which("hadolint") or str(root / ".venv/bin/hadolint")
    for f in files:
        if Path(hadolint).exists():
            res = subprocess.run([hadolint, "--config", str(root / "containers/.hadolint.yaml"), str(f)],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                problems.append(f"hadolint {f.relative_to(root)}:\n{res.stdout.strip()}")
    return problems


def check_nfcore(root: Path) -> list[str]:
    """``nf-core pipelines lint`` and ``schema lint``, offline (settings in .nf-core.yml)."""
    nfcore = root / ".venv-nfcore/bin/nf-core"
    if not nfcore.exists():
        return ["nf-core tools missing: run make setup"]
    env = {**os.environ, "NXF_OFFLINE": "true", "NFCORE_NO_VERSION_CHECK": "1", "NXF_ANSI_LOG": "false",
           "PATH": f"{root / '.venv/bin'}:{os.environ.get('PATH', '')}", "TERM": "dumb", "COLUMNS": "120"}
    problems = []
    for args in (["pipelines", "lint", "--dir", str(root)], ["pipelines", "schema", "lint", "nextflow_schema.json"]):
        res = subprocess.run([str(nfcore), *args], cwd=root, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-25:])
            problems.append(f"nf-core {' '.join(args[:2])} failed:\n{tail}")
    return problems


def run_all(root: Path) -> list[str]:
    return check_json_schemas(root) + check_params_match(root) + check_dockerfiles(root) + check_nfcore(root)
