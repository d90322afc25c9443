"""Listing a manifest's inputs: every unit with its pseudonymous key and its split.

Each source's adapter lists its units; this module gives each unit its file key
(:mod:`builder.privacy`: keyed by the machine's secret, or, for a public
release whose names are public, a plain hash of the public name), draws its
split from a group key, and turns what is already known to be unusable (a
broken metadata row, a blank group key) into reject lines. A source that lists
no input at all is an error: a build of nothing is never a success.
"""

from __future__ import annotations

import dataclasses
import hashlib

from builder.errors import Stage
from builder.pipeline.accounting import Ledger
from builder.pipeline.data import Unit, file_stem
from builder.pipeline.sources import ADAPTERS
from builder.pipeline.sources.manifest import Manifest
from builder.pipeline.template import Template, TemplateError
from builder.privacy import IdKey

__all__ = ["CollectError", "assign_split", "collect", "keyed"]


class CollectError(RuntimeError):
    """A source that yields no input."""


def keyed(unit: Unit, key: IdKey) -> Unit:
    """The unit with its file key: public names hash plainly, local paths with the secret key."""
    spec = unit.spec
    if unit.public is not None and ADAPTERS[spec.format].public_names:
        digest = hashlib.sha1(f"{spec.name}\0{unit.public}".encode()).hexdigest()[:20]
    else:
        digest = key.file_key(spec.name, unit.rel)
    return dataclasses.replace(unit, key=digest)


def assign_split(unit: Unit) -> Unit:
    """The unit with the split its group key draws; a blank key is a problem unless the rule says ``file``."""
    rule = unit.spec.split_rule
    if rule is None:
        return unit
    values = {**{k: ("" if v is None else v) for k, v in unit.meta.items()}, "file": unit.rel,
              "stem": file_stem(unit.image), "source": unit.spec.name}
    try:
        group = Template(rule.by).render(values)
    except TemplateError:
        group = ""
    if not group.strip():
        if rule.blank != "file":
            return dataclasses.replace(unit, problem=f"its split group key {rule.by!r} is blank (set "
                                                     "split.blank: file to draw such files by their own path)")
        group = unit.rel
    return dataclasses.replace(unit, split=rule.assign(group))


def collect(manifest: Manifest, key: IdKey) -> tuple[list[Unit], Ledger]:
    """Every unit to build, in manifest order, and a ledger of what listing them found unusable."""
    units: list[Unit] = []
    setup = Ledger()
    for spec in manifest.sources:
        found, problems = ADAPTERS[spec.format].units(spec)
        for problem in problems:
            if problem.skipped:
                setup.skip(spec.name, problem.skipped)
                continue
            public = f"{spec.name}:{problem.public}" if problem.public else spec.name
            setup.reject_other(spec.name, problem.file, Stage.PAIRING, problem.reason, public=public,
                               names=(problem.file,))
        if not found and not problems:  # files that are all accounted for (skipped, rejected) are not "nothing"
            raise CollectError(f"source {spec.name!r}: {spec.options.inputs()} matches no input file")
        for unit in found:
            unit = assign_split(keyed(unit, key))
            if unit.problem:
                setup.reject_file(spec.name, unit.rel, Stage.LISTING, unit.problem, public=unit.label, id=unit.id,
                                  names=unit.names)
            else:
                units.append(unit)
    return units, setup
