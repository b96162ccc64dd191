"""MkDocs hooks: check and carry the docs' links to repository files outside ``docs/``.

The pages link to example DAGs and the benchmarks with relative paths (``../example_dags/x.py``), so the
links work when the Markdown is read on GitHub. MkDocs only knows ``docs/`` and would reject them as
missing: these hooks add every such file that exists to the site (under ``repo/``) and point the link at
that copy. A link to a file that does not exist is left alone, so the strict build still fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files, InclusionLevel

#: Where repository files outside docs/ land in the site.
REPO_PREFIX = "repo"
# An inline Markdown link or image target: ](target) or ](target "title") or ](target#anchor).
_LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<rest>(?:#[^)\s]*)?(?:\s+\"[^\"]*\")?)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _repo_root(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _outside_targets(markdown: str, page_path: Path, docs_dir: Path, root: Path) -> dict[str, Path]:
    """Map each relative link target of one page that resolves outside docs/ (and exists) to its file."""
    found: dict[str, Path] = {}
    for match in _LINK.finditer(_FENCE.sub("", markdown)):
        target = match.group("target")
        if _SCHEME.match(target) or target.startswith("/"):
            continue
        resolved = (page_path.parent / target).resolve()
        if resolved.is_relative_to(docs_dir) or not resolved.is_relative_to(root) or not resolved.is_file():
            continue
        found[target] = resolved
    return found


def _site_uri(path: Path, docs_dir: Path, root: Path) -> str:
    if path.is_relative_to(docs_dir):
        return path.relative_to(docs_dir).as_posix()
    return f"{REPO_PREFIX}/{path.relative_to(root).as_posix()}"


def on_files(files: Files, config: Any, **_: Any) -> Files:
    """Add the repository files the pages link to, following links from added Markdown files too."""
    docs_dir = Path(config["docs_dir"]).resolve()
    root = _repo_root(config)
    pending = [Path(f.abs_src_path) for f in files if f.abs_src_path and f.src_uri.endswith(".md")]
    added: set[Path] = set()
    while pending:
        page = pending.pop()
        for target in _outside_targets(page.read_text(encoding="utf-8"), page, docs_dir, root).values():
            if target in added:
                continue
            added.add(target)
            uri = _site_uri(target, docs_dir, root)
            # Not in the nav on purpose: a linked file, not a chapter of the guide.
            files.append(File.generated(config, uri, abs_src_path=str(target), inclusion=InclusionLevel.NOT_IN_NAV))
            if target.suffix == ".md":
                pending.append(target)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, **_: Any) -> str:
    """Point links to repository files at their copies in the site."""
    docs_dir = Path(config["docs_dir"]).resolve()
    root = _repo_root(config)
    page_path = Path(page.file.abs_src_path)
    outside = _outside_targets(markdown, page_path, docs_dir, root)
    page_is_outside = not page_path.is_relative_to(docs_dir)
    if not outside and not page_is_outside:
        return markdown
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        target = match.group("target")
        if target in outside:
            resolved = outside[target]
        elif page_is_outside and not _SCHEME.match(target) and not target.startswith("/"):
            # A repository page copied into the site: its links into docs/ must follow it.
            resolved = (page_path.parent / target).resolve()
            if not resolved.is_relative_to(docs_dir):
                return match.group(0)
        else:
            return match.group(0)
        new = posixpath.relpath(_site_uri(resolved, docs_dir, root), here or ".")
        return f"]({new}{match.group('rest')})"

    return _LINK.sub(rewrite, markdown)
