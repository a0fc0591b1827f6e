"""The explorer's static files, read as files: no HTML from strings, nothing from elsewhere, all shipped."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

from flowscope_collector.server.ui import STATIC

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in STATIC.rglob("*.js") if p.name != "swagger-init.js")


def test_no_script_builds_html_from_strings_or_evaluates_code() -> None:
    banned = re.compile(r"\binnerHTML\b|\bouterHTML\b|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function\s*\("
                        r"|setAttribute\(\s*[\"']on|\.setHTMLUnsafe|createContextualFragment")
    found = [f"{p.relative_to(STATIC)}:{i}: {line.strip()}" for p in [*SCRIPTS, STATIC / "swagger-init.js"]
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if banned.search(line) and not line.strip().startswith("//")]
    assert not found, found


def test_nothing_is_loaded_from_another_origin() -> None:
    remote = re.compile(r"""(?:src|href|url|import)\s*[=(]?\s*["'`]?(?:https?:)?//""", re.I)
    found = [f"{p.relative_to(STATIC)}:{i}" for p in STATIC.rglob("*") if p.is_file()
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if remote.search(line) and "www.w3.org/2000/svg" not in line]
    assert not found, found


def test_index_preloads_every_module_and_the_package_ships_every_file() -> None:
    index = (STATIC / "index.html").read_text()
    listed = set(re.findall(r'href="/ui/(js/[^"]+\.js)"', index)) | set(re.findall(r'src="/ui/(js/[^"]+\.js)"', index))
    modules = {p.relative_to(STATIC).as_posix() for p in SCRIPTS}
    assert listed == modules
    tomllib = pytest.importorskip("tomllib")
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "flowscope_collector"]
    unshipped = [p.relative_to(STATIC.parents[2]).as_posix() for p in STATIC.rglob("*") if p.is_file()
                 and not any(fnmatch(p.relative_to(STATIC.parents[2]).as_posix(), g) and
                             p.relative_to(STATIC.parents[2]).as_posix().count("/") == g.count("/") for g in globs)]
    assert not unshipped, f"add to [tool.setuptools.package-data]: {unshipped}"
