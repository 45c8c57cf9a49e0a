"""Checks run by `make lint` (scripts/lint.py); tests/pipeline/test_modules.py runs the module checks too."""

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


_MODULE_REQUIRED = ("name", "description", "keywords", "tools", "input", "output", "authors")


def _channel_names(section: str) -> list[list[str]]:
    """Element names of each channel of a module's input: section, e.g. ``tuple val(meta), path(h5ad)`` ->
    ``['meta', 'h5ad']`` and ``path gmt`` -> ``['gmt']``."""
    channels = []
    for line in section.splitlines():
        code = line.split("//")[0].strip()
        if not code:
            continue
        names = re.findall(r"\b(?:val|path|env)\(\s*([A-Za-z_]\w*)", code)
        if not names:
            m = re.match(r"^(?:val|path|env)\s+([A-Za-z_]\w*)", code)
            names = [m.group(1)] if m else []
        if names:
            channels.append(names)
    return channels


def check_modules(root: Path) -> list[str]:
    """Every module has a meta.yml in the nf-core shape that documents exactly its inputs and emits; modules read
    no meta key but ``id`` (the rest reaches them as inputs or ``ext.args``); versions.yml holds versions only."""
    import yaml

    problems = []
    for main in sorted((root / "modules").glob("**/main.nf")):
        rel = main.parent.relative_to(root)
        text = main.read_text()
        meta_yml = main.parent / "meta.yml"
        if not meta_yml.exists():
            problems.append(f"{rel}: meta.yml is missing")
            continue
        doc = yaml.safe_load(meta_yml.read_text()) or {}
        for key in _MODULE_REQUIRED:
            if not doc.get(key):
                problems.append(f"{rel}/meta.yml: '{key}' is missing or empty")
        name = "_".join(rel.parts[2:])   # modules/<local|nf-core>/<tool>[/<subtool>]
        if doc.get("name") != name:
            problems.append(f"{rel}/meta.yml: name {doc.get('name')!r}, expected {name!r}")
        if len(doc.get("keywords") or []) < 3:
            problems.append(f"{rel}/meta.yml: give at least 3 keywords")
        m = re.search(r"\n\s*input:\n(.*?)\n\s*output:\n(.*?)\n\s*when:", text, re.S)
        if not m:
            problems.append(f"{rel}: no input:/output:/when: sections found")
            continue
        declared = [n for ch in _channel_names(m.group(1)) for n in ch]
        documented = []
        for channel in doc.get("input") or []:
            for element in channel if isinstance(channel, list) else [channel]:
                documented.extend(element)
        if declared != documented:
            problems.append(f"{rel}/meta.yml: input {documented} does not match main.nf {declared}")
        emits = re.findall(r"emit:\s*(\w+)", m.group(2))
        if list(doc.get("output") or {}) != emits:
            problems.append(f"{rel}/meta.yml: output {list(doc.get('output') or {})} does not match the emits {emits}")
        for element in (e for ch in (doc.get("input") or []) for e in (ch if isinstance(ch, list) else [ch])):
            for name, spec in element.items():
                if not isinstance(spec, dict) or not spec.get("type") or not spec.get("description"):
                    problems.append(f"{rel}/meta.yml: input '{name}' needs a type and a description")
        if "local" in rel.parts:
            for key in sorted(set(re.findall(r"\bmeta\.(\w+)", text)) - {"id"}):
                problems.append(f"{rel}: reads meta.{key} (pass it as an input or through ext.args)")
        if "# container:" in text:
            problems.append(f"{rel}: versions.yml carries a '# container:' line (the trace records the container)")
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
    return (check_json_schemas(root) + check_params_match(root) + check_modules(root) + check_dockerfiles(root)
            + check_nfcore(root))
