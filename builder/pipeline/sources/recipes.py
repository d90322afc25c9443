"""Recipes: a public dataset's layout as data, one YAML file each (``builder/recipes/<name>.yaml``).

A manifest entry ``{name: nih, recipe: nih-chestxray14, root: /data/NIH}`` becomes the
recipe's ``source`` with ``{root}`` replaced by the entry's ``root`` (relative to the
manifest's folder), then the entry's own keys on top (``modality:``, ``boxes:``,
``split:`` ... replace the recipe's). A new recipe is one YAML file: ``name``,
``title``, ``url``, ``license``, ``layout`` (what the folder holds, as published),
``notes`` and ``source`` (a manifest source entry of the formats). Packages may add
recipes through the ``medtrinity_25m.recipes`` entry point (a :class:`Recipe`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from builder.errors import ManifestError
from builder.registry import Registry
from builder.yamlsafe import load_yaml

__all__ = ["RECIPES", "Recipe", "describe", "expand_recipe", "load_recipes"]

FIELDS = ("name", "title", "url", "license", "layout", "notes", "source")


@dataclass(frozen=True)
class Recipe:
    """A public dataset as published: where to get it, what its folder holds, and the source entry that reads it."""

    name: str
    title: str
    source: Mapping[str, Any]
    url: str = ""
    license: str = ""
    layout: str = ""
    notes: str = ""


def _recipe(text: str, where: str) -> Recipe:
    doc = load_yaml(text, where)
    if not isinstance(doc, dict) or not isinstance(doc.get("source"), dict) or not doc.get("name"):
        raise ValueError(f"{where}: a recipe needs a name and a source mapping")
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown recipe key {unknown[0]!r}")
    return Recipe(name=str(doc["name"]), title=str(doc.get("title", doc["name"])), source=dict(doc["source"]),
                  url=str(doc.get("url", "")), license=str(doc.get("license", "")),
                  layout=str(doc.get("layout", "")).rstrip(), notes=str(doc.get("notes", "")).rstrip())


def load_recipes() -> dict[str, Recipe]:
    """The recipes shipped in the package, by name."""
    found = {}
    for item in sorted(resources.files("builder").joinpath("recipes").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            recipe = _recipe(item.read_text(encoding="utf-8"), f"recipes/{item.name}")
            found[recipe.name] = recipe
    return found


RECIPES: Registry[Recipe] = Registry("recipes", load_recipes())


def _substituted(value: Any, root: str) -> Any:
    if isinstance(value, str):
        return value.replace("{root}", root)
    if isinstance(value, list):
        return [_substituted(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _substituted(v, root) for k, v in value.items()}
    return value


def expand_recipe(entry: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """The manifest entry with its recipe expanded (the entry's own keys win); an entry without one as it is."""
    if "recipe" not in entry:
        return dict(entry)
    name = entry["recipe"]
    if not isinstance(name, str) or name not in RECIPES:
        raise ManifestError("recipe", f"{name!r} is not one of {', '.join(sorted(RECIPES))} (medtri-build recipes "
                                      "lists them)")
    given = entry.get("root")
    if not isinstance(given, str) or not given.strip():
        raise ManifestError("root", f"recipe {name} needs root: the folder the dataset was downloaded to")
    root = given if os.path.isabs(given) else os.path.normpath(os.path.join(folder, given))
    if not os.path.isdir(root):
        raise ManifestError("root", f"folder not found: {root}")
    expanded = _substituted(RECIPES[name].source, root.replace("\\", "/"))
    own = {k: v for k, v in entry.items() if k not in ("recipe", "root")}
    if "root" in expanded or "root" in RECIPES[name].source:
        own.pop("root", None)
    return {**expanded, **own}


def describe(recipe: Recipe) -> str:
    """A recipe as ``medtri-build recipes NAME`` shows it."""
    lines = [f"{recipe.name}: {recipe.title}", f"  format: {recipe.source.get('format')}"]
    lines += [f"  url: {recipe.url}"] if recipe.url else []
    lines += [f"  license: {recipe.license}"] if recipe.license else []
    lines += ["  layout (root is the folder that holds):"] + [f"    {line}" for line in recipe.layout.splitlines()]
    lines += ["  notes:"] + [f"    {line}" for line in recipe.notes.splitlines()] if recipe.notes else []
    return "\n".join(lines)
