"""Settings: every ``PANELBEATER_*`` variable is a field of ``core.config.Settings``, and a
message that names one builds the name with ``env_name`` from the one prefix."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT

#: The application's code: tests and benchmarks set the environment by name, so they may
#: spell it.
PACKAGES = "core db exports active_learning models services jobs api annotator cli".split()
CODE = sorted(
    p
    for package in PACKAGES
    for p in (REPO_ROOT / package).rglob("*.py")
    if "migrations" not in p.parts
) + [REPO_ROOT / "app.py"]


def _env_name_literals(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "env_name"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_env_name_is_the_prefix_and_the_field() -> None:
    from core.config import Settings, env_name

    assert env_name("max_image_bytes") == "PANELBEATER_MAX_IMAGE_BYTES"
    assert env_name("assist_autotrain") == "PANELBEATER_ASSIST_AUTOTRAIN"
    assert env_name("data_dir").startswith(Settings.model_config["env_prefix"])
    with pytest.raises(ValueError, match="'max_image_byte' is not a setting"):
        env_name("max_image_byte")


def test_the_name_env_name_gives_is_the_one_settings_read(monkeypatch) -> None:
    from core.config import Settings, env_name

    monkeypatch.setenv(env_name("max_comment_chars"), "123")
    monkeypatch.setenv(env_name("queue_url"), "redis://example:6379/0")
    s = Settings()
    assert s.max_comment_chars == 123 and s.queue_url == "redis://example:6379/0"


def test_the_worker_sees_the_same_settings(tmp_path: Path, monkeypatch) -> None:
    from core.config import Settings
    from jobs.worker import worker_env

    given = Settings(data_dir=tmp_path, max_comment_chars=77, torch_threads=None)
    env = worker_env(given)
    assert env["PANELBEATER_MAX_COMMENT_CHARS"] == "77" and "PANELBEATER_TORCH_THREADS" not in env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().max_comment_chars == 77 and Settings().data_dir == tmp_path.resolve()


def test_every_env_name_in_the_code_names_a_setting() -> None:
    from core.config import Settings

    calls = {p: _env_name_literals(p) for p in CODE}
    assert sum(len(c) for c in calls.values()) > 20
    bad = [
        f"{p.relative_to(REPO_ROOT)}:{line} env_name({name!r})"
        for p, found in calls.items()
        for line, name in found
        if name not in Settings.model_fields
    ]
    assert bad == []


def test_only_core_config_spells_the_prefix() -> None:
    spelt = [
        f"{p.relative_to(REPO_ROOT)}:{n}"
        for p in CODE
        if p != REPO_ROOT / "core" / "config.py"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "PANELBEATER_" in line
    ]
    assert spelt == [], "name the variable with core.config.env_name(field)"
