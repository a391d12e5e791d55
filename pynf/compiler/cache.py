"""The compile cache: where compiled code is kept, and when it is stale.

Numba keys a cached function on its own file, but a kernel inlines code
from the modules it imports (the parser, the tables), so an edit there
must make it stale too. Here a cached function's stamp is a digest of its
file and of every module that file imports at module level, transitively:
pynf's own, and a user NF's helper modules beside it. Each file counts as
its syntax tree without docstrings, so editing comments, docstrings or
formatting compiles nothing, and editing pynf/nfs/lb.py recompiles lb's
kernels and the stages that run lb, not the parser, the other NFs or the
I/O loops. Numba's version and the flags that change generated code
(NUMBA_BOUNDSCHECK, ...) are in every stamp.

Generated stage modules (pynf.compiler.stage) live in cache_dir()/stages,
Numba's cached code in cache_dir()/numba ($NUMBA_CACHE_DIR where set).
"""
import ast
import atexit
import functools
import hashlib
import os
import shutil
import sys
import tempfile

import numba
from numba import config as _numba_config
from numba.core import caching

# the folder that holds pynf/ (a checkout, or site-packages)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Numba settings that change the generated code: NUMBA_BOUNDSCHECK=1 must not
# load code compiled without bounds checks
_FLAGS = ("BOUNDSCHECK", "OPT", "DEBUGINFO_DEFAULT", "FASTMATH")

_CACHE_DIR = None


def cache_dir():
    """$PYNF_CACHE_DIR, else $XDG_CACHE_HOME/pynf or ~/.cache/pynf. One that
    cannot be made or written gets one line on stderr, and a temporary
    directory serves this process (compiled code is then not kept)."""
    global _CACHE_DIR
    if _CACHE_DIR is not None:
        return _CACHE_DIR
    d = os.environ.get("PYNF_CACHE_DIR")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "pynf")
    try:
        os.makedirs(d, exist_ok=True)
        if not os.access(d, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        tmp = tempfile.mkdtemp(prefix="pynf-cache-")
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        sys.stderr.write(f"pynf: warning: cache directory {d}: {e.strerror or e}; "
                         f"compiling into {tmp} for this run (set PYNF_CACHE_DIR)\n")
        d = tmp
    _CACHE_DIR = d
    return d


def flags_key():
    """Numba's version and the settings that change the code it generates."""
    return numba.__version__ + "".join(f";{f}={getattr(_numba_config, f, None)}" for f in _FLAGS)


def _strip_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _module_imports(tree):
    """Names imported at module level (also under if/try/with), each as the
    candidates to resolve: `from a.b import c` gives a.b.c, then a.b."""
    out = []

    def visit(stmts):
        for s in stmts:
            if isinstance(s, ast.Import):
                out.extend([a.name] for a in s.names)
            elif isinstance(s, ast.ImportFrom) and s.module and s.level == 0:
                out.extend([f"{s.module}.{a.name}", s.module] for a in s.names)
            elif isinstance(s, (ast.If, ast.Try, ast.With)):
                for part in ("body", "orelse", "finalbody"):
                    visit(getattr(s, part, []))
                for h in getattr(s, "handlers", []):
                    visit(h.body)
    visit(tree.body)
    return out


def _resolve(name, importer):
    """The source file of module `name` imported by `importer`: pynf's own,
    or a module beside the importer (a user NF's helpers); None for the rest."""
    parts = name.split(".")
    bases = [ROOT] if parts[0] == "pynf" else [os.path.dirname(importer)]
    for base in bases:
        p = os.path.join(base, *parts)
        for cand in (p + ".py", os.path.join(p, "__init__.py")):
            if os.path.isfile(cand):
                return cand
    return None


@functools.lru_cache(maxsize=4096)
def _file(path, mtime_ns, size):
    """(digest of the file's syntax tree without docstrings, files it imports)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        tree = ast.parse(raw, filename=path)
    except SyntaxError:
        return hashlib.sha256(raw).hexdigest(), ()
    own = hashlib.sha256(ast.dump(_strip_docstrings(tree), annotate_fields=False).encode()).hexdigest()
    deps = []
    for cands in _module_imports(tree):
        for c in cands:
            r = _resolve(c, path)
            if r is not None:
                deps.append(r)
                break
    return own, tuple(sorted(set(deps)))


def _info(path):
    st = os.stat(path)
    return _file(os.path.abspath(path), st.st_mtime_ns, st.st_size)


def digest(path):
    """Digest of `path` and every file it imports (see the module docstring),
    with Numba's flags: the stamp of the code compiled from it."""
    seen, todo = {}, [os.path.abspath(path)]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        try:
            own, deps = _info(p)
        except OSError:
            own, deps = "missing", ()
        seen[p] = own
        todo.extend(deps)
    h = hashlib.sha256(flags_key().encode())
    for p in sorted(seen):
        h.update(f"{os.path.relpath(p, ROOT) if p.startswith(ROOT) else p}={seen[p]};".encode())
    return h.hexdigest()[:20]


def _function_key(py_func):
    """A function's own code (no docstring), told apart from others of its file."""
    import inspect
    import textwrap
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(py_func)))
        return hashlib.sha1(ast.dump(_strip_docstrings(tree), annotate_fields=False).encode()).hexdigest()[:12]
    except (OSError, TypeError, SyntaxError, IndentationError):
        return str(py_func.__code__.co_firstlineno)


class DigestLocator(caching._CacheLocator):
    """Numba's cache locator for pynf: stamps are digest()s (see above)."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._key = _function_key(py_func)
        base = _numba_config.CACHE_DIR or os.path.join(cache_dir(), "numba")
        self._cache_path = os.path.join(base, self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path

    def get_source_stamp(self):
        return digest(self._py_file)

    def get_disambiguator(self):
        return self._key

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.isfile(py_file):
            return None
        self = cls(py_func, py_file)
        try:
            self.ensure_cache_path()
        except OSError:
            return None
        return self


def install():
    """Make DigestLocator Numba's first choice (once per process)."""
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl     # (named so before Numba 0.61)
    if DigestLocator not in impl._locator_classes:
        impl._locator_classes.insert(0, DigestLocator)
