"""YAML as this project reads it: safe types only, and no anchors or aliases.

``yaml.safe_load`` still expands aliases, so a few hundred bytes of nested
aliases ("billion laughs") expand to gigabytes. Manifests, curation files and
cards never need them: an alias is refused outright, before it expands.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["YamlError", "load_yaml"]


class YamlError(ValueError):
    """YAML that is not valid, or uses an anchor or alias."""


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlError(f"YAML aliases (*{event.anchor}) are not accepted (line {event.start_mark.line + 1})")
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise YamlError(f"YAML anchors (&{event.anchor}) are not accepted (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def load_yaml(text: str | bytes, name: str = "<yaml>") -> Any:
    """The document in ``text``; :class:`YamlError` naming ``name`` and the reason otherwise."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except YamlError as exc:
        raise YamlError(f"{name}: {exc}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise YamlError(f"{name}: not valid YAML: {exc}") from None
