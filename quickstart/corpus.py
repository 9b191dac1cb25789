"""A text corpus built from the documentation that ships with the Python interpreter.

Every Python installation carries English prose about Python itself, so a corpus made from it
exists on any machine with no download. It has two parts, in this order:

1. ``pydoc_data.topics.topics``: the language reference sections that ``help("if")`` and friends
   print (about 80 documents, ~0.45 MB), one document per topic, sorted by topic name.
2. The docstrings of the pure-Python standard library (``*.py`` under ``sysconfig``'s ``stdlib``
   folder, for the top-level names in ``sys.stdlib_module_names``): one document per module with
   the module docstring followed by each class, function and method docstring under a header line
   (``class json.JSONDecoder`` / ``def json.loads(s, *, cls=None, ...)``), sorted by module name.
   Sources are parsed with :mod:`ast`, never imported, so no module runs code (``antigravity``
   would open a browser, ``this`` prints, ``tkinter`` needs a display). Test suites
   (``test``, ``tests``, ``idle_test``) and ``idlelib`` are skipped, as are files that do not parse.

Documents are written in a fixed pseudo-random order (shuffled with a seed, default 0), so that a
validation split cut from the front of the file looks like the rest; the order is deterministic
for a given Python build and seed (``shuffle_seed=None`` keeps topics first, then modules by name).
On CPython 3.11 the corpus is ~2.5 MB of text (~670 documents, ~9,000 docstrings).

License: both parts are Python's own documentation, distributed with the interpreter under the
Python Software Foundation License (PSF-2.0); a corpus written by this module carries the same license.

Output: a ``.jsonl`` file, one document per line, ``{"text": ..., "source": ...}`` (``source`` is
``pydoc_data.topics:<topic>`` or ``stdlib:<module>``), which ``nanogpt2.data.prepare_data`` reads
through its ``text`` column.
"""

from __future__ import annotations

import ast
import json
import os
import random
import sys
import sysconfig
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..utils import atomic_write

# Folders whose contents are test fixtures or GUI code rather than documentation.
SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "idlelib", "__pycache__", "site-packages"})


def topic_documents() -> Iterator[dict[str, str]]:
    """The language-reference topics that ``help()`` shows, sorted by topic name."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions package pydoc_data separately
        return
    for name in sorted(topics):
        text = topics[name].strip()
        if text:
            yield {"text": text, "source": f"pydoc_data.topics:{name}"}


def stdlib_source_files(stdlib_dir: Path | None = None) -> list[tuple[str, Path]]:
    """(dotted module name, path) of every pure-Python stdlib module, sorted by module name."""
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    stdlib_names = sys.stdlib_module_names
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel.parts and rel.parts[0] not in stdlib_names:
            dirnames.clear()  # site-packages, lib-dynload, config-*, ...
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            stem = filename[:-3]
            if not rel.parts and stem not in stdlib_names:
                continue  # e.g. __hello__.py, _sysconfigdata_*.py
            parts = list(rel.parts) + ([] if stem == "__init__" else [stem])
            found.append((".".join(parts), Path(dirpath) / filename))
    return sorted(found)


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    try:
        return f"({ast.unparse(node.args)})"
    except Exception:  # ast.unparse is best-effort on unusual defaults
        return "(...)"


@dataclass
class Docstring:
    """One docstring of a module's source: what it documents and the text."""

    kind: str  # "module", "class", "def" or "async def"
    name: str  # dotted, from the module: "json", "json.JSONDecoder", "json.JSONDecoder.decode"
    signature: str  # "(s, *, cls=None)" for functions, "" otherwise
    text: str

    @property
    def header(self) -> str:
        return f"Module {self.name}" if self.kind == "module" else f"{self.kind} {self.name}{self.signature}"


def module_docstrings(module: str, path: Path) -> list[Docstring]:
    """The docstrings of a module file in source order (module, then each class, function and method);
    empty if it has none or does not parse."""
    try:
        with tokenize.open(path) as f:  # honours the file's coding declaration
            tree = ast.parse(f.read(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return []
    module_doc = ast.get_docstring(tree)
    found = [Docstring("module", module, "", module_doc)] if module_doc else []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                doc = ast.get_docstring(node)
                if doc:
                    found.append(Docstring("class", f"{prefix}{node.name}", "", doc))
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    keyword = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
                    found.append(Docstring(keyword, f"{prefix}{node.name}", _signature(node), doc))

    visit(tree.body, f"{module}.")
    return found


def module_document(module: str, path: Path) -> str | None:
    """A module's docstrings as one document, each under its header line, or None if there are none."""
    docstrings = module_docstrings(module, path)
    if not docstrings:
        return None
    sections = [f"{doc.header}\n\n{doc.text}" for doc in docstrings]
    if docstrings[0].kind != "module":
        sections.insert(0, f"Module {module}")
    return "\n\n".join(sections).strip()


def docstring_documents(stdlib_dir: Path | None = None) -> Iterator[dict[str, str]]:
    """One document per pure-Python stdlib module that has docstrings, sorted by module name."""
    for module, path in stdlib_source_files(stdlib_dir):
        text = module_document(module, path)
        if text:
            yield {"text": text, "source": f"stdlib:{module}"}


def iter_builtin_documents(*, topics: bool = True, docstrings: bool = True) -> Iterator[dict[str, str]]:
    """All documents of the corpus in their fixed order: topics first, then module docstrings."""
    if topics:
        yield from topic_documents()
    if docstrings:
        yield from docstring_documents()


def write_builtin_corpus(
    path: str | os.PathLike[str],
    *,
    max_docs: int | None = None,
    max_chars: int | None = None,
    topics: bool = True,
    docstrings: bool = True,
    shuffle_seed: int | None = 0,
) -> Path:
    """Write the corpus to ``path`` as jsonl (atomically) and return the path.

    ``max_docs`` / ``max_chars`` stop after that many documents / characters of text (the document
    that crosses ``max_chars`` is kept whole), for quick runs and tests; they apply after shuffling
    with ``shuffle_seed`` (None: no shuffle).
    """
    for name, value in (("max_docs", max_docs), ("max_chars", max_chars)):
        if value is not None and value <= 0:
            raise ValueError(f"write_builtin_corpus: {name} must be positive, got {value}")
    documents = list(iter_builtin_documents(topics=topics, docstrings=docstrings))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(documents)
    n_docs = n_chars = 0
    with atomic_write(path) as file:
        for doc in documents:
            if (max_docs is not None and n_docs >= max_docs) or (max_chars is not None and n_chars >= max_chars):
                break
            file.write(json.dumps(doc, ensure_ascii=False) + "\n")
            n_docs += 1
            n_chars += len(doc["text"])
        if n_docs == 0:
            raise RuntimeError(
                "write_builtin_corpus: found no documentation in this Python installation "
                f"(pydoc_data and stdlib sources under {sysconfig.get_paths()['stdlib']}); "
                "pass your own text files instead"
            )
    return Path(path)
