"""Imports point down the flow `smtp → parse → spool → dispatch → providers → report`: a module may import its own
package, the shared bottom (config, model, errors, …) and the stages after its own; parse/ is pure and imports no
other stage at all. Every import in the package is read from the source (function-level ones too), so a new upward
import fails here unless it is added, with its reason, to `JUSTIFIED`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import mail2sms

PACKAGE = Path(mail2sms.__file__).resolve().parent
FLOW = ("smtp", "parse", "spool", "dispatch", "providers", "report")
# Plain data and plumbing every layer may read: configuration, typed data, the exception tree, logging and
# metrics, the one address rule and what a provider can carry.
BOTTOM = frozenset({"__init__", "config", "model", "errors", "observability", "metrics", "addresses", "limits"})
# The composition root builds everything from the config and may import anything.
ROOT = frozenset({"__main__", "app", "cli", "queuecli", "workers", "web", "checks", "sdnotify"})
PURE = frozenset({"parse"})  # bytes in, typed data out: no other stage of the flow

# (importing module or package prefix, imported module): why this upward import is right.
JUSTIFIED: dict[tuple[str, str], str] = {
    ("mail2sms.config", "mail2sms.providers.registry"): (
        "a provider's type, default URL and required fields are its adapter's facts; read lazily when a config "
        "is checked"
    ),
    ("mail2sms.metrics", "mail2sms.smtp.replies"): "metric labels are derived from the one table of SMTP replies",
    ("mail2sms.observability", "mail2sms.providers.http"): "logging setup silences httpx's URL logging",
    ("mail2sms.dispatch", "mail2sms.spool.base"): "the dispatcher claims and records jobs through the spool",
    ("mail2sms.report", "mail2sms.spool.base"): "the reporter claims and records reports through the spool",
    ("mail2sms.report", "mail2sms.dispatch.retry"): "report delivery backs off by the same retry policy",
    ("mail2sms.providers", "mail2sms.parse.text"): (
        "adapters encode on the wire by the same GSM-7 alphabet that counted the parts at DATA"
    ),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    """`smtp` for mail2sms.smtp.handler, `config` for mail2sms.config, `__init__` for the package itself."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file():
        return parts[1]
    return "__init__"  # `from mail2sms import __version__`: an attribute of the package


def _is_module(name: str) -> bool:
    where = PACKAGE.parent.joinpath(*name.split("."))
    return where.is_dir() or where.with_suffix(".py").is_file()


def _imports(path: Path) -> Iterator[str]:
    """Every mail2sms module `path` imports, at module level or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mail2sms":
            for alias in node.names:  # `from mail2sms.smtp import replies` imports the module smtp.replies
                yield f"{node.module}.{alias.name}" if _is_module(f"{node.module}.{alias.name}") else node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "mail2sms")


def _allowed(source: str, target: str) -> bool:
    src, dst = _layer(source), _layer(target)
    if src == dst or dst in BOTTOM or src in ROOT:
        return True
    if src in PURE:
        return False
    return src in FLOW and dst in FLOW and FLOW.index(src) < FLOW.index(dst)


def _justified(source: str, target: str) -> bool:
    return any((source == who or source.startswith(who + ".")) and target == what for who, what in JUSTIFIED)


def upward_imports() -> list[str]:
    """`source -> target` for every import that points up the flow and is not justified."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        for target in _imports(path):
            if not _allowed(source, target) and not _justified(source, target):
                found.append(f"{source} -> {target}")
    return found


def test_no_import_points_up_the_flow() -> None:
    """No module imports a stage before its own (or, from parse/, any other stage) except the justified few."""
    assert upward_imports() == []


def test_parse_imports_neither_providers_nor_report() -> None:
    """parse/ gets a provider's limits and text rules from its caller and leaves the report decision to it."""
    for path in sorted((PACKAGE / "parse").rglob("*.py")):
        for target in _imports(path):
            assert _layer(target) not in {"providers", "report"}, f"{_module_name(path)} imports {target}"


def test_every_justified_exception_is_still_used() -> None:
    """A justification whose import is gone is removed, so the list stays the true list of exceptions."""
    used = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        for target in _imports(path):
            used |= {(w, t) for w, t in JUSTIFIED if t == target and (source == w or source.startswith(w + "."))}
    assert set(JUSTIFIED) == used


def test_the_walk_sees_an_upward_import() -> None:
    """The check itself works: parse importing providers, or report importing smtp, is caught."""
    assert not _allowed("mail2sms.parse.fit", "mail2sms.providers.registry")
    assert not _allowed("mail2sms.report.reporter", "mail2sms.smtp.handler")
    assert _allowed("mail2sms.smtp.handler", "mail2sms.parse.submission")
    assert _allowed("mail2sms.app", "mail2sms.smtp.handler")
