"""Dependencies point one way (DESIGN.md, section 2): `backends` never imports `gateway` or
`local_workers`; `local_workers` imports neither `gateway` nor `backends`. Every import a module
names counts, wherever it stands: at the top, inside a function, under TYPE_CHECKING, or a constant
string handed to importlib. And every module imports on its own, first, in an interpreter that has
imported none of ours, so no module works only because another happened to be imported before it
(an import cycle shows up here as a partially initialised module).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "backends", "local_workers")
FORBIDDEN = {"backends": ("gateway", "local_workers"), "local_workers": ("gateway", "backends")}

# Run in a fresh interpreter: the third-party packages our modules name are imported once, then
# each module of ours is imported by a forked child that inherits none of ours, so one import
# never leans on another and the whole check costs one interpreter start, not one per module.
FRESH_IMPORTS = r"""
import importlib, json, os, sys, traceback
root, modules, third_party = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
sys.path.insert(0, root)
for name in third_party:
    try:
        importlib.import_module(name)
    except Exception:
        pass  # an optional dependency (uvloop, gguf): the module that needs it says so itself
assert not [m for m in sys.modules if m.split(".")[0] in ("gateway", "backends", "local_workers")]
failures = {}
for module in modules:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            loaded = importlib.import_module(module)
            where = os.path.realpath(loaded.__file__)
            error = "" if where.startswith(os.path.realpath(root) + os.sep) else f"imported from {where}"
        except BaseException:
            error = traceback.format_exc(limit=-3)
        os.write(write, error.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        error = pipe.read().decode()
    os.waitpid(pid, 0)
    if error:
        failures[module] = error
print(json.dumps(failures))
"""


def module_files() -> dict[str, Path]:
    """Every module of the three packages by dotted name; `__main__` modules are programs that run
    when imported (`python -m ...`), so they are parsed for the rules but not imported alone."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(module: str, path: Path) -> set[str]:
    """The dotted names a module imports anywhere in its body, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _dynamic_import(node):
            names.add(node.args[0].value)
    return names


def _dynamic_import(call: ast.Call) -> bool:
    func = call.func
    named = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return (named in ("import_module", "__import__") and bool(call.args)
            and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str))


def broken_rules(modules: dict[str, Path]) -> list[str]:
    broken = []
    for module, path in modules.items():
        banned = FORBIDDEN.get(module.split(".")[0], ())
        for name in sorted(imported_names(module, path)):
            if name.split(".")[0] in banned:
                broken.append(f"{path.relative_to(ROOT)} imports {name}")
    return broken


def test_the_three_packages_are_all_found():
    modules = module_files()
    assert {"gateway.app", "backends.base", "local_workers.sim", "local_workers.tinygguf"} <= set(modules)


def test_backends_and_local_workers_import_only_what_they_may():
    broken = broken_rules(module_files())
    assert broken == [], "\n".join(broken)


def test_the_rule_check_sees_imports_in_functions_and_type_checking_blocks(tmp_path):
    scratch = tmp_path / "backends" / "scratch.py"
    scratch.parent.mkdir()
    scratch.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.state import Snapshot\n"
                       "def f():\n    from local_workers import sim\n    import importlib\n"
                       "    importlib.import_module('gateway.app')\n")
    assert imported_names("backends.scratch", scratch) >= {"gateway.state", "local_workers.sim", "gateway.app"}


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    modules = module_files()
    third_party = sorted({name.split(".")[0] for module, path in modules.items()
                          for name in imported_names(module, path)} - set(PACKAGES) - {"__future__"})
    ours = sorted(m for m in modules if m.rpartition(".")[2] != "__main__")
    run = subprocess.run([sys.executable, "-c", FRESH_IMPORTS, str(ROOT), json.dumps(ours), json.dumps(third_party)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    failures = json.loads(run.stdout)
    assert failures == {}, "\n".join(f"{m}:\n{error}" for m, error in failures.items())
