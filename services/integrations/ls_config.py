"""A Label Studio labelling config, read with ``label_studio_sdk``'s ``LabelInterface``, and
its labels mapped onto the project's taxonomy.

A label maps to a class through the map a lead gives in the ML backend's extra params
(``{"label_map": {"Dent": "dent"}}``), else by the class's name, else by its name or display
name written loosely (case, spaces and hyphens ignored: ``Front left door`` is
``front_left_door``). Every ``PolygonLabels`` and ``BrushLabels`` label must map; the error
names each one that does not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.taxonomy import LabelClass, Taxonomy
from services.errors import Invalid

#: The tags whose regions the backend answers with, and those a person prompts with.
REGION_TAGS = ("PolygonLabels", "BrushLabels")
PROMPT_TAGS = ("KeyPointLabels", "RectangleLabels")


@dataclass(frozen=True)
class ControlTag:
    """One labels tag of the config: its ``name``, the image it labels (``to_name``) and
    its labels mapped to class ids."""

    tag: str
    name: str
    to_name: str
    class_of: dict[str, int]

    def label_for(self, class_id: int) -> str | None:
        """This tag's label for ``class_id`` (the first one, when several map to it)."""
        for label, cid in self.class_of.items():
            if cid == class_id:
                return label
        return None


@dataclass(frozen=True)
class LabelMapping:
    """What the backend needs of a config: the image it reads (``image_name`` and the task
    data key ``image_key``), the polygon and brush tags (either may be None, not both), and
    the keypoint and rectangle tags a person prompts with."""

    image_name: str
    image_key: str
    polygon: ControlTag | None
    brush: ControlTag | None
    prompts: dict[str, ControlTag] = field(default_factory=dict)

    def class_of(self, label: str) -> int | None:
        """The class id of a label of any tag of the config, else None."""
        for tag in (self.polygon, self.brush, *self.prompts.values()):
            if tag is not None and label in tag.class_of:
                return tag.class_of[label]
        return None

    def labels(self) -> dict[str, int]:
        """Every mapped label of the config (region and prompt tags) -> class id."""
        out: dict[str, int] = {}
        for tag in (*self.prompts.values(), self.brush, self.polygon):
            if tag is not None:
                out.update(tag.class_of)
        return out


def _loose(text: str) -> str:
    return re.sub(r"[\s\-_]+", "_", text.strip().lower())


def label_map_from(extra_params: Any) -> dict[str, str]:
    """The ``label_map`` of the ML backend's extra params (``{"LS label": "taxonomy name"}``);
    Invalid naming the field when it is not such an object."""
    if extra_params in (None, "", {}):
        return {}
    if not isinstance(extra_params, Mapping):
        raise Invalid(
            'extra_params must be a JSON object such as {"label_map": {"Dent": "dent"}}, '
            f"not {type(extra_params).__name__}"
        )
    given = extra_params.get("label_map", {})
    if not isinstance(given, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in given.items()
    ):
        raise Invalid(
            "extra_params.label_map must map Label Studio label names to taxonomy class names, "
            'as {"Dent": "dent"}'
        )
    return dict(given)


def resolve_label(
    label: str, taxonomy: Taxonomy, label_map: Mapping[str, str]
) -> LabelClass | None:
    """The class ``label`` stands for (see the module docstring), else None."""
    if label in label_map:
        return taxonomy.get(label_map[label])
    exact = taxonomy.get(label)
    if exact is not None:
        return exact
    key = _loose(label)
    for cls in taxonomy:
        if key in (_loose(cls.name), _loose(cls.display_name)):
            return cls
    return None


def read_config(config: str, taxonomy: Taxonomy, label_map: Mapping[str, str]) -> LabelMapping:
    """The :class:`LabelMapping` of a labelling config (``schema`` in ``/setup``,
    ``label_config`` in ``/predict``).

    Raises Invalid naming the field: a config that does not parse, that has no Image tag or no
    PolygonLabels/BrushLabels tag on it, a map entry naming no taxonomy class, or labels that
    map to no class (all of them named at once).
    """
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(config, str) or not config.strip():
        raise Invalid("schema: the labelling config is empty; send the project's XML config")
    wrong = sorted(v for v in label_map.values() if taxonomy.get(v) is None)
    if wrong:
        raise Invalid(
            f"extra_params.label_map maps to {', '.join(map(repr, wrong))}, which "
            f"{'is no class' if len(wrong) == 1 else 'are no classes'} of the taxonomy"
        )
    try:
        interface = LabelInterface(config)
    except Exception as e:  # the SDK raises its own XML and validation errors
        raise Invalid(f"schema: the labelling config does not parse ({e})") from None
    images = {o.name: o for o in interface.objects if o.tag == "Image"}
    if not images:
        raise Invalid("schema: the labelling config has no Image tag; the backend labels photos")
    unknown: list[str] = []
    tags: dict[str, list[ControlTag]] = {}
    for control in interface.controls:
        if control.tag not in (*REGION_TAGS, *PROMPT_TAGS):
            continue
        to_name = next((n for n in control.to_name if n in images), None)
        if to_name is None:
            continue
        class_of: dict[str, int] = {}
        for label in control.labels:
            cls = resolve_label(label, taxonomy, label_map)
            if cls is not None:
                class_of[label] = cls.id
            elif control.tag in REGION_TAGS:
                unknown.append(f"{control.tag} {control.name!r}: {label!r}")
        tags.setdefault(control.tag, []).append(
            ControlTag(control.tag, control.name, to_name, class_of)
        )
    if unknown:
        raise Invalid(
            f"schema: {len(unknown)} label(s) map to no taxonomy class: {'; '.join(unknown)}. "
            "Rename them to class names (`panelbeater taxonomy` lists them) or map them in the "
            'ML backend\'s extra params: {"label_map": {"Dent": "dent"}}'
        )
    polygon = (tags.get("PolygonLabels") or [None])[0]
    brush = (tags.get("BrushLabels") or [None])[0]
    region = polygon or brush
    if region is None:
        raise Invalid(
            "schema: the labelling config has no PolygonLabels or BrushLabels tag on an Image; "
            "the backend answers with polygons (and brush masks)"
        )
    image_name = region.to_name
    image_key = images[image_name].value.lstrip("$")
    prompts = {
        tag: next((t for t in found if t.to_name == image_name), found[0])
        for tag, found in tags.items()
        if tag in PROMPT_TAGS
    }
    if brush is not None and brush.to_name != image_name:
        brush = None
    return LabelMapping(image_name, image_key, polygon, brush, prompts)
