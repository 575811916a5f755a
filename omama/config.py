"""The config schema (workflow/schemas/config.schema.yaml plus each kind's fragment) as the one source of defaults.

``validate`` checks a whole config and fills every default (the Snakefile calls it first; omama never
imports snakemake): the main schema holds what every dataset, backbone and proposer has; each entry's kind
(``omama.registry``: built-in kinds and the config's ``plugins``) adds its own settings, validated together
with those, so an unknown key is an error there too. ``entry`` fills one entry (a dataset, a backbone, a
proposer, an experiment, training settings) for code called outside the workflow; ``reference`` writes the
README's config reference (``python -m omama.config``), kinds included.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

# workflow/schemas/config.schema.yaml, through a link in the package (a wheel holds the file itself)
SCHEMA = Path(__file__).with_name("config.schema.yaml")
# Entries of these sections: where their schema sits in the config schema.
ENTRIES = {
    "datasets": ("properties", "datasets", "additionalProperties"),
    "backbones": ("properties", "backbones", "additionalProperties"),
    "proposers": ("properties", "proposers", "additionalProperties"),
    "experiments": ("properties", "experiments", "additionalProperties"),
    "train": ("definitions", "train"),
}
KINDED = ("datasets", "backbones", "proposers")  # sections whose entries have a kind with settings of its own


class ConfigError(ValueError):
    """A config that breaks the schema; the message names the key, the rule and what the key is for."""


@functools.cache
def schema() -> dict:
    with open(SCHEMA) as f:
        return yaml.safe_load(f)


def registry(section: str):
    """The kinds of a kinded section (``omama.registry``)."""
    from omama import registry as r

    return {"datasets": r.DATASETS, "backbones": r.BACKBONES, "proposers": r.PROPOSERS}[section]


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


def _fill(instance, sub: dict, where: str):
    """Validate ``instance`` against ``sub`` and fill its defaults; a ConfigError naming the key (``where`` is
    the path of ``instance`` in the config), the rule and what the key is for."""
    validator = _Filling({**sub, "definitions": schema()["definitions"]})
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        key = ".".join(filter(None, [where, *map(str, error.absolute_path)])) or "(top level)"
        about = error.schema.get("description") if isinstance(error.schema, dict) else None
        raise ConfigError(f"config error at {key}: {error.message}" + (f" ({about})" if about else ""))
    return instance


def entry_schema(section: str, kind: str | None = None) -> dict:
    """The schema of one entry of ``section``: for a kinded section, the settings every entry has and those of
    ``kind``, nothing else allowed."""
    sub = schema()
    for key in ENTRIES[section]:
        sub = sub[key]
    if section not in KINDED:
        return sub
    fragment = registry(section).get(kind).schema
    return {
        **{k: v for k, v in fragment.items() if k != "properties"},
        "type": "object",
        "additionalProperties": False,
        "required": sorted({*sub.get("required", []), *fragment.get("required", [])}),
        "properties": {**sub["properties"], **fragment.get("properties", {})},
    }


def validate(config: dict) -> dict:
    """Check ``config`` against the schema and fill every default in place (each kinded entry with its kind's
    settings, after importing the config's ``plugins``); returns it. A ConfigError names the key."""
    from omama.registry import use_plugins

    _fill(config, schema(), "")
    use_plugins(config["plugins"])
    for section in KINDED:
        for name, cfg in config[section].items():
            where = f"{section}.{name}"
            try:
                sub = entry_schema(section, cfg["kind"])
            except ValueError as e:
                raise ConfigError(f"config error at {where}.kind: {e}") from None
            _fill(cfg, sub, where)
    return config


def entry(section: str, cfg: dict) -> dict:
    """A copy of one ``section`` entry ("datasets", "backbones", "proposers", "experiments", "train"), checked,
    with its defaults (its kind's too)."""
    cfg = copy.deepcopy(cfg)
    kind = cfg.get("kind") if section in KINDED and isinstance(cfg, dict) else None
    try:
        sub = entry_schema(section, kind)
    except ValueError as e:
        raise ConfigError(f"invalid {section} entry {cfg!r}: {e}") from None
    return _fill(cfg, sub, f"{section} entry")


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


def kind_setting(section: str, kind: str, key: str, value):
    """A copy of one setting ``key`` of a ``kind`` entry of ``section`` (``synthetic`` of a synthetic dataset),
    checked, with its defaults: for code called with that setting alone."""
    sub = entry_schema(section, kind)["properties"][key]
    return _fill(copy.deepcopy(value), sub, f"{section} entry (kind {kind}).{key}")


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
    """The README's config reference: one row per key (``a.b``; ``<name>`` for named entries), then the
    settings each built-in kind adds (``datasets.<name>.synthetic.takes`` with kind synthetic)."""
    s = schema()
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    rows = _rows(s["properties"], "", s["definitions"], {})
    for section in KINDED:
        for kind, k in registry(section).items():
            props = k.schema.get("properties", {})
            rows += [
                r.replace(" | ", f" (kind {kind}) | ", 1) for r in _rows(props, f"{section}.<name>.", s["definitions"], {})
            ]
    return "\n".join(lines + rows) + "\n"


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
