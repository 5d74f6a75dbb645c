"""The drawing canvas: a Gradio 6 ``gr.HTML`` widget whose JavaScript talks to ``/api``.

The widget's value is a small JSON string ``{token, username, role, permissions}`` set by the
login handler; everything else (the photo, its annotations, saves) goes between the browser and
the REST API with that bearer token, so the server stays authoritative and Gradio events stay
tiny. See ``static/canvas.js`` for the editing logic and ``annotator.shortcuts`` for the keys.
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


@lru_cache(maxsize=1)
def canvas_js() -> str:
    js = (STATIC / "canvas.js").read_text(encoding="utf-8")
    return js.replace("__SHORTCUTS__", json.dumps(SHORTCUTS))


@lru_cache(maxsize=1)
def canvas_css() -> str:
    # css_template is a JS template string too: keep `${` and backticks out of it.
    css = (STATIC / "canvas.css").read_text(encoding="utf-8")
    assert "${" not in css and "`" not in css
    return css


def session_value(
    token: str | None, username: str = "", role: str = "", permissions: list[str] | None = None
) -> str:
    """The widget's value: who is signed in (empty string when nobody is)."""
    if not token:
        return ""
    return json.dumps(
        {
            "token": token,
            "username": username,
            "role": role,
            "permissions": sorted(permissions or []),
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
