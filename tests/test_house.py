"""The house rules that can be checked: no import circles, one backend
contract, slots named once, NF manual pages that match their specs."""
import ast
import dataclasses
import inspect
import os
import re

import pytest

from pynf import slots
from pynf.io.backend import Backend
from pynf.nf import available, load

from support import ROOT


def _imports():
    mods = {}
    for pkg in ("pynf",):
        for dp, _, fs in os.walk(os.path.join(ROOT, pkg)):
            for f in fs:
                if f.endswith(".py"):
                    name = os.path.relpath(os.path.join(dp, f), ROOT)[:-3].replace(os.sep, ".")
                    mods[name.removesuffix(".__init__")] = os.path.join(dp, f)
    edges = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(open(path).read())):         # function-level imports too
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            edges[m] |= {n for n in names if n in mods and n != m}
    return edges


def test_no_import_circles():
    edges = _imports()
    state, path = {}, []

    def visit(v):
        state[v] = 1
        path.append(v)
        for w in edges[v]:
            if state.get(w) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(w):] + [w]))
            if w not in state:
                visit(w)
        path.pop()
        state[v] = 2
    for v in sorted(edges):
        if v not in state:
            visit(v)


@pytest.mark.parametrize("cls", ["pynf.io.mem.backend.MemIO", "pynf.io.dpdk.backend.DpdkIO"])
def test_backends_keep_the_contract(cls):
    import importlib
    mod, _, name = cls.rpartition(".")
    impl = getattr(importlib.import_module(mod), name)
    wanted = [n for n, v in vars(Backend).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert len(wanted) >= 15
    missing = [n for n in wanted if not callable(getattr(impl, n, None))]
    assert not missing, f"{name} lacks {missing}"


def test_slots_are_named_once():
    for prefix in ("W_", "NF_", "RO_", "A_"):
        vals = {k: v for k, v in vars(slots).items() if k.startswith(prefix) and isinstance(v, int)
                and k not in ("NF_COLS",)}
        assert len(set(vals.values())) == len(vals), prefix
    assert max(v for k, v in vars(slots).items() if k.startswith("W_")) < slots.WS_SIZE
    assert max(v for k, v in vars(slots).items() if k.startswith("NF_") and k != "NF_COLS") < slots.NF_COLS


def _section(doc, title):
    """The first words of each entry of a docstring section ('Drops:' ...)."""
    lines = doc.splitlines()
    out, inside, col = [], False, None
    for ln in lines:
        m = re.match(r"^(\w[\w ]*):\s+(.*)$", ln)
        if m and not ln.startswith(" "):
            if inside:
                break
            if m.group(1) == title:
                inside = True
                col = len(ln) - len(m.group(2))
                ln = " " * col + m.group(2)
        if inside and len(ln) > col and ln[:col].strip() == "":
            m = re.match(r"([a-z_][a-z0-9_]*)(\s{2,}|$)", ln[col:])   # a name, then its description
            if m:
                out.append(m.group(1))
    return out


@pytest.mark.parametrize("name", sorted(available()))
def test_nf_manual_pages_match_their_specs(name):
    spec = load(name)
    assert _section(spec.doc, "Drops") == list(spec.drops)
    if spec.config is None:
        return
    settable = [f.name for f in dataclasses.fields(spec.config)
                if isinstance(f.default, (int, float, str, bool)) and not isinstance(f.default, tuple)]
    documented = _section(spec.doc, "Settings")
    assert sorted(documented) == sorted(settable)
    for key in spec.live or {}:
        assert key in settable


def _code_strings_and_names(path):
    """The identifiers and string constants of a module, docstrings and
    comments left out (they may name an NF as an example)."""
    tree = ast.parse(open(path).read())
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in [getattr(node, "module", None) or ""] + [a.name for a in node.names]:
                yield node.lineno, name


def test_the_framework_names_no_nf():
    """Outside pynf/nfs/, no code names a library NF, its files or its
    verbs: what an NF brings, it declares (pynf.nf.File, Verb), and a new NF
    needs no framework edit."""
    words = set()
    for name in available():
        spec = load(name)
        words |= {name, *(f.flag for f in spec.files)}
    pat = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True))
                     + r")(?![\w-])")
    found = []
    for dp, _, fs in os.walk(os.path.join(ROOT, "pynf")):
        if os.path.relpath(dp, ROOT).split(os.sep)[:2] == ["pynf", "nfs"]:
            continue
        for f in fs:
            if f.endswith(".py"):
                path = os.path.join(dp, f)
                for line, text in _code_strings_and_names(path):
                    m = pat.search(text)
                    if m:
                        found.append(f"{os.path.relpath(path, ROOT)}:{line}: {m.group(1)} in {text[:60]!r}")
    assert not found, "\n".join(found)
