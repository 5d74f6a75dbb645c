"""The drawing canvas: a Gradio 6 ``gr.HTML`` widget whose JavaScript talks to ``/api``.

The widget's value is a small JSON string ``{token, username, role, permissions}`` set by the
login handler; everything else (the photo, its annotations, saves) goes between the browser and
the REST API with that bearer token, so the server stays authoritative and Gradio events stay
tiny. The editing logic lives in ``static/canvas/``, one file per concept (see
``CANVAS_MODULES``); ``annotator.shortcuts`` lists the keys.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import gradio as gr

from annotator.shortcuts import SHORTCUTS

STATIC = Path(__file__).with_name("static")

#: Static on purpose: Gradio re-renders (and drops JS-built nodes) only when the template's
#: output changes, and this one never does.
HTML_TEMPLATE = '<div class="pb-root"></div>'


#: The widget's JavaScript files under ``static/canvas/``, in the order they are joined. Gradio
#: takes one ``js_on_load`` text, so the files are concatenated rather than loaded as ES modules.
#: Each defines one factory that ``main.js`` (last) calls; ``geometry.js`` (first) is pure and
#: standalone, so ``tests/test_canvas_geometry.py`` can load it alone into a blank page.
CANVAS_MODULES = (
    "geometry",  # hit tests, nearest edge, areas, part suggestion: no DOM
    "palette",  # distinct class colours: no DOM
    "classes",  # fuzzy class search (a port of core/fuzzy.py): no DOM
    "api",  # REST client and photo blob cache
    "dom",  # finding and making elements, the status line
    "render",  # SVG layers
    "zoom",  # zoom buttons and level, sharp full-resolution region when zoomed in
    "panels",  # toolbar and side panels
    "sides",  # the lead's list of instances imported without a side
    "edits",  # change, undo/redo, autosave
    "actions",  # what the user can do: draw, delete, assist, predictions, status
    "navigate",  # queue and photo opening
    "input",  # pointer, keyboard, control bindings
    "main",  # state, wiring, start-up
)


def canvas_module_path(name: str) -> Path:
    return STATIC / "canvas" / f"{name}.js"


@lru_cache(maxsize=1)
def canvas_js() -> str:
    """The ``js_on_load`` text: the modules joined in order, in one function scope of their own."""
    parts = [
        f"// ---- static/canvas/{name}.js ----\n"
        + canvas_module_path(name).read_text(encoding="utf-8")
        for name in CANVAS_MODULES
    ]
    js = "(function () {\n" + "\n".join(parts) + "})();\n"
    if js.count("__SHORTCUTS__") != 1:
        raise RuntimeError("static/canvas/main.js must contain __SHORTCUTS__ exactly once")
    return js.replace("__SHORTCUTS__", json.dumps(SHORTCUTS))


@lru_cache(maxsize=1)
def canvas_css() -> str:
    # css_template is a JS template string too: keep `${` and backticks out of it.
    css = (STATIC / "canvas.css").read_text(encoding="utf-8")
    assert "${" not in css and "`" not in css
    return css


def session_value(
    token: str | None,
    username: str = "",
    role: str = "",
    permissions: list[str] | None = None,
    landing: str = "workspace",
) -> str:
    """The widget's value: who is signed in (empty string when nobody is), and the tab they
    land on (a workspace that is not it waits to be opened before it takes a photo)."""
    if not token:
        return ""
    return json.dumps(
        {
            "token": token,
            "username": username,
            "role": role,
            "permissions": sorted(permissions or []),
            "landing": landing,
        }
    )


def canvas_widget(value: str = "") -> gr.HTML:
    return gr.HTML(
        value=value,
        html_template=HTML_TEMPLATE,
        css_template=canvas_css(),
        js_on_load=canvas_js(),
        apply_default_css=False,
        elem_id="pb-canvas",
        padding=False,
    )
