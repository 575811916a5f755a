"""The config schema (workflow/schemas/config.schema.yaml) as the one source of defaults.

``validate`` fills a whole config the way Snakemake's ``validate`` does for the workflow (omama
never imports snakemake); ``entry`` fills one entry (a backbone, a proposer, training settings)
for code called outside the workflow; ``reference`` writes the README's config reference
(``python -m omama.config``).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators

# workflow/schemas/config.schema.yaml, through a link in the package (a wheel holds the file itself)
SCHEMA = Path(__file__).with_name("config.schema.yaml")
# Entries of these sections: where their schema sits in the config schema.
ENTRIES = {
    "backbones": ("properties", "backbones", "additionalProperties"),
    "proposers": ("properties", "proposers", "additionalProperties"),
    "experiments": ("properties", "experiments", "additionalProperties"),
    "train": ("definitions", "train"),
    "synthetic": ("properties", "synthetic"),
    "selection": ("properties", "selection"),
}


@functools.cache
def schema() -> dict:
    with open(SCHEMA) as f:
        return yaml.safe_load(f)


def _set_defaults(validate_properties):
    def properties(validator, props, instance, sub):
        if isinstance(instance, dict):
            for key, prop in props.items():
                if "default" in prop:
                    instance.setdefault(key, copy.deepcopy(prop["default"]))
        yield from validate_properties(validator, props, instance, sub)

    return properties


_Filling = validators.extend(
    Draft202012Validator, {"properties": _set_defaults(Draft202012Validator.VALIDATORS["properties"])}
)


def _fill(instance, sub: dict, what: str):
    try:
        _Filling({**sub, "definitions": schema()["definitions"]}).validate(instance)
    except ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "(top level)"
        raise ValueError(f"invalid {what} at {where}: {e.message}") from None
    return instance


def validate(config: dict) -> dict:
    """Check ``config`` against the schema and fill every default in place; returns it."""
    return _fill(config, schema(), "config")


def entry(section: str, cfg: dict) -> dict:
    """A copy of one ``section`` entry ("backbones", "proposers", "experiments", "train"), checked, with its
    defaults."""
    sub = schema()
    for key in ENTRIES[section]:
        sub = sub[key]
    return _fill(copy.deepcopy(cfg), sub, f"{section} entry {cfg!r}")


def apply_environment(config: dict, environ=None) -> None:
    """Set what every job of a run (and ``omama match``) takes from the config through the environment:
    ``TORCH_HOME`` (``torch_home``: torchvision's checkpoint cache), the Hugging Face hub's timeouts
    (``network_timeout``) and ``OMP_WAIT_POLICY=PASSIVE``; a value you exported yourself wins (but
    ``torch_home``). Waiting OpenMP threads (torch, numpy) then sleep instead of spinning: jobs share the
    cores, and the spinning threads of one job take them from the others (two trainings side by side on 2
    cores ran 2.7x slower; benchmarks/omp_wait.py, RESULTS.md). Before torch is imported: OpenMP reads it once."""
    import os

    environ = os.environ if environ is None else environ
    if config["torch_home"]:
        environ["TORCH_HOME"] = os.path.abspath(config["torch_home"])
    for var in ("HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT"):
        environ.setdefault(var, f"{config['network_timeout']:g}")
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _default(prop: dict) -> str | None:
    if "default" not in prop:
        return None
    return f"`{yaml.safe_dump(prop['default'], default_flow_style=True, width=1000).strip().removesuffix('...').strip()}`"


def _rows(props: dict, prefix: str, defs: dict, conditional: dict) -> list[str]:
    rows = []
    for key, prop in props.items():
        prop = {**defs.get(prop.get("$ref", "").rsplit("/", 1)[-1], {}), **prop} if "$ref" in prop else prop
        name = f"{prefix}{key}"
        default = _default(prop) or conditional.get(key) or ""
        about = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|").replace("<", "\\<")
        rows.append(f"| `{name}` | {default} | {about} |")
        inner = prop
        for branch in prop.get("oneOf", []):
            inner = {**defs.get(branch.get("$ref", "").rsplit("/", 1)[-1], {}), **branch} if "$ref" in branch else branch
            if "properties" in inner:
                break
        if "properties" in inner:
            rows += _rows(inner["properties"], f"{name}.", defs, _conditional(inner))
        elif isinstance(prop.get("additionalProperties"), dict) and "properties" in prop["additionalProperties"]:
            named = prop["additionalProperties"]
            rows += _rows(named["properties"], f"{name}.<name>.", defs, _conditional(named))
    return rows


def _conditional(sub: dict) -> dict:
    """Defaults set by ``allOf`` if/then branches, per key: "`value` (kind a/b)"."""
    found: dict[str, list[str]] = {}
    for branch in sub.get("allOf", []):
        conds = branch.get("if", {}).get("properties", {})
        when = ", ".join(f"{k} {'/'.join(map(str, c.get('enum') or [c.get('const')]))}" for k, c in conds.items())
        for key, prop in branch.get("then", {}).get("properties", {}).items():
            found.setdefault(key, []).append(f"{_default(prop)} ({when})")
    return {k: "; ".join(v) for k, v in found.items()}


def reference() -> str:
    """The README's config reference: one row per key (``a.b``; ``<name>`` for named entries)."""
    s = schema()
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    return "\n".join(lines + _rows(s["properties"], "", s["definitions"], {})) + "\n"


BEGIN = "<!-- config reference: generated from the schema by `python -m omama.config --readme README.md` -->"
END = "<!-- end of config reference -->"


def readme_section(text: str) -> str:
    """The generated part of a README between the markers (an error when they are missing)."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"README has no config reference between {BEGIN!r} and {END!r}")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def write_readme(path) -> None:
    """Replace the README's config reference with the one generated from the schema."""
    text = Path(path).read_text()
    readme_section(text)  # the markers are there
    before, rest = text.split(BEGIN, 1)
    Path(path).write_text(f"{before}{BEGIN}\n{reference()}{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--readme"]:
        write_readme(sys.argv[2])
    else:
        print(reference(), end="")
