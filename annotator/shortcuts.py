"""Every keyboard shortcut of the workspace: the help panel and the canvas's help overlay read this list."""

from __future__ import annotations

#: (keys, what it does), in the order the help panel lists them.
SHORTCUTS: list[tuple[str, str]] = [
    ("V", "select / edit tool: click a polygon to select it, drag it to move it"),
    ("N", "draw a new polygon vertex by vertex (click the first vertex or press Enter to close)"),
    ("H", "draw a hole in the selected polygon"),
    ("M", "add another part to the selected shape (multi-part)"),
    ("A", "assist tool: click = positive point, Shift+click = negative point, drag = box"),
    ("Enter", "close the polygon being drawn / accept the assist preview"),
    ("Esc", "cancel drawing or the assist preview; deselect"),
    ("drag a vertex", "move it (select the polygon first)"),
    ("click an edge", "add a vertex there (on the selected polygon)"),
    ("Alt+click a vertex", "delete that vertex"),
    ("Delete / Backspace", "delete the selected vertex, else the selected polygon"),
    ("Ctrl+Z", "undo (100 steps)"),
    ("Ctrl+Shift+Z / Ctrl+Y", "redo"),
    (
        "1 … 9",
        "recent class 1 … 9: the selected polygon's class, or with nothing selected the class"
        " of new polygons",
    ),
    ("Tab / Shift+Tab", "select the next / previous shape under the last click (else of all)"),
    ("click the selected shape again", "select the next shape under the pointer"),
    ("/", "search the class list"),
    ("Y", "accept the selected pending prediction"),
    ("X", "reject the selected pending prediction"),
    ("Shift+Y", "accept every pending prediction at or above the threshold"),
    ("Shift+1 / Shift+2 / Shift+3", "hide or show damage / fake / part overlays"),
    ("→ or D", "next photo in the queue"),
    ("← or S", "previous photo in the queue"),
    ("Ctrl+Enter", "mark the photo labelled (review mode: approve)"),
    ("mouse wheel", "zoom at the pointer; drag with the middle button or Space held to pan"),
    ("0", "fit the photo to the window"),
    ("+ / -", "zoom in / out (the toolbar shows the level: 100% = a photo pixel per screen pixel)"),
    ("F", "zoom to the selected polygon"),
    ("L", "show or hide class names on the polygons"),
    ("?", "show or hide this help"),
]


def shortcuts_markdown() -> str:
    rows = "\n".join(f"| `{k}` | {v} |" for k, v in SHORTCUTS)
    return "| keys | action |\n|---|---|\n" + rows
