#!/usr/bin/env python3
"""Print the cycles in the file-level dependency graph of Rust crates.

Usage: scripts/module_cycles.py CRATE_SRC_DIR...    (e.g. crates/luoshu-graph/src)

Exit status 1 when some crate has a cycle, 0 otherwise.

The nodes are the .rs files of a crate's module tree (lib.rs, then every `mod x;`).
File A depends on file B when A names an item of B through a path inside the crate: a
`use` or an inline path that starts with `crate::`, `super::`, `self::`, a child module
or a name A imported. Paths are resolved through the module tree, following `use`
aliases, so an item reached through a re-export counts as a use of the file that
defines it. Declaring a module (`mod x;`) and importing a module as a namespace are not
dependencies, and neither is a `pub use` re-export unless the file itself uses the
name. So a parent `mod.rs` and its children form a cycle exactly when a child uses an
item the parent defines and the parent uses (not merely re-exports) an item a child
defines; the usual fix is to move what the children share into a lower sibling file.

Comments and string literals are ignored; macros are not expanded, and `#[cfg]` is
ignored (every module and every `#[cfg(test)]` block counts).
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# Comments, then literals; char literals are told from lifetimes by their closing quote.
NOISE = re.compile(
    r"//[^\n]*"
    r"|/\*(?:[^*]|\*(?!/))*\*/"
    r'|(?<!\w)b?r(#*)".*?"\1'
    r'|(?<!\w)b?"(?:\\.|[^"\\])*"'
    r"|(?<!\w)b?'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'",
    re.S,
)
MOD_DECL = re.compile(rf"\bmod\s+({IDENT})\s*([;{{])")
USE_ITEM = re.compile(rf"(?:\bpub(?:\s*\([^)]*\))?\s+)?\buse\s+([^;]*);")
PATH = re.compile(rf"(?<![\w:])({IDENT}(?:\s*::\s*{IDENT})+)")


def strip_noise(text):
    """Blank comments and literals, keeping offsets (so braces and paths stay put)."""
    return NOISE.sub(blank, text)


def blank(match):
    return " " * len(match.group(0))


def matching_brace(code, open_at):
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(code)


def parse_use_tree(tree):
    """`a::{b, c as d, self, e::*}` -> [(["a", "b"], "b"), (["a", "c"], "d"), (["a"], "a"),
    (["a", "e", "*"], None)]: each path with the name it imports (None for `as _`)."""
    # `as` is the one keyword a tree holds; mark it before dropping whitespace.
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+", "@", tree))
    out = []

    def walk(prefix, text):
        if text.endswith("}") and "{" in text:
            head, body = text.split("{", 1)
            head = [s for s in head.split("::") if s]
            depth, start = 0, 0
            parts = []
            for i, c in enumerate(body[:-1]):
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                elif c == "," and depth == 0:
                    parts.append(body[start:i])
                    start = i + 1
            parts.append(body[start:-1])
            for part in parts:
                if part:
                    walk(prefix + head, part)
            return
        name, _, alias = text.partition("@")
        segments = prefix + [s for s in name.split("::") if s]
        if segments[-1] == "self":
            segments = segments[:-1]
        if segments[-1] == "*":
            out.append((segments, None))
        else:
            alias = alias or segments[-1]
            out.append((segments, None if alias == "_" else alias))

    walk([], tree)
    return out


class Crate:
    def __init__(self, src):
        self.src = Path(src)
        self.file_of = {}  # module path (tuple of names) -> file
        self.children = {}  # module path -> {name: child module path}
        self.aliases = {}  # module path -> {imported name: path segments}
        # (file, module path, path segments, kind, imported name); kind is "use", "glob",
        # "reexport" or "path" (an inline path in code).
        self.refs = []
        self.body = {}  # file -> the code its items consist of (see `load`)
        root = self.src / "lib.rs"
        self.load((), root if root.exists() else self.src / "main.rs")

    def load(self, module, path):
        code = strip_noise(path.read_text())
        self.file_of[module] = path
        # Inline modules (`mod tests { ... }`) are scopes inside this file.
        scopes = [(0, len(code), module)]
        declared = []
        for m in MOD_DECL.finditer(code):
            owner = scope_at(scopes, m.start())
            child = owner + (m.group(1),)
            self.children.setdefault(owner, {})[m.group(1)] = child
            if m.group(2) == "{":
                scopes.append((m.end() - 1, matching_brace(code, m.end() - 1), child))
                self.file_of[child] = path
            else:
                declared.append(child)
        for m in USE_ITEM.finditer(code):
            scope = scope_at(scopes, m.start())
            reexport = m.group(0).lstrip().startswith("pub")
            for segments, name in parse_use_tree(m.group(1)):
                if name:
                    self.aliases.setdefault(scope, {})[name] = segments
                kind = "reexport" if reexport else "glob" if segments[-1] == "*" else "use"
                self.refs.append((path, scope, segments, kind, name))
        # What the file's own code names: without its `use` items and `mod x;` lines.
        declarations = MOD_DECL.sub(lambda m: blank(m) if m.group(2) == ";" else m.group(0), code)
        body = USE_ITEM.sub(blank, declarations)
        self.body[path] = body
        for m in PATH.finditer(body):
            segments = re.split(r"\s*::\s*", m.group(1))
            self.refs.append((path, scope_at(scopes, m.start()), segments, "path", None))
        # `mod x;` in lib.rs, main.rs or a mod.rs is a sibling file, in `a.rs` it is `a/x.rs`.
        child_dir = path.parent
        if path.name not in ("lib.rs", "main.rs", "mod.rs"):
            child_dir = path.parent / path.stem
        for child in declared:
            name = child[-1]
            for candidate in (child_dir / f"{name}.rs", child_dir / name / "mod.rs"):
                if candidate.exists():
                    self.load(child, candidate)
                    break

    def resolve(self, module, segments, depth=0):
        """Where a path leads from `module`: ("module", module path), ("item", the file
        defining it), or None when it leaves the crate (std, another crate, a local type
        or a generic parameter)."""
        if depth > 32 or not segments:
            return None
        cur, rest = module, list(segments)
        if rest[0] == "crate":
            cur, rest = (), rest[1:]
        elif rest[0] in ("self", "super"):
            while rest and rest[0] in ("self", "super"):
                if rest.pop(0) == "super":
                    cur = cur[:-1]
        elif rest[0] not in self.children.get(cur, {}) and rest[0] not in self.aliases.get(cur, {}):
            return None
        for i, seg in enumerate(rest):
            alias = self.aliases.get(cur, {}).get(seg)
            # A module and an item may share a name (`mod evaluate; pub use
            # evaluate::evaluate;`): before `::` the name is the module, last the item.
            is_last = i == len(rest) - 1
            if seg in self.children.get(cur, {}) and not (is_last and alias):
                cur = self.children[cur][seg]
                continue
            if alias is None:
                return ("item", self.file_of[cur]) if cur in self.file_of else None
            target = self.resolve(cur, alias, depth + 1)
            if target is None or target[0] == "item":
                return target
            cur = target[1]
        return ("module", cur) if cur in self.file_of else None

    def edges(self):
        """file -> {file it depends on: the first path that says so}."""
        graph = {f: {} for f in self.body}
        for file, scope, segments, kind, name in self.refs:
            # A re-export is a use only when the file itself also uses the name.
            if kind == "reexport" and not (name and re.search(rf"\b{name}\b", self.body[file])):
                continue
            target = self.resolve(scope, segments[:-1] if kind == "glob" else segments)
            if target is None:
                continue
            # Importing a module is not a use of it (using its items is); a glob import uses
            # what the module defines.
            if target[0] == "item":
                dep = target[1]
            elif kind == "glob":
                dep = self.file_of[target[1]]
            else:
                continue
            if dep != file:
                graph[file].setdefault(dep, "::".join(segments))
        return graph


def scope_at(scopes, pos):
    """The innermost (inline) module around offset `pos`."""
    return max((s for s in scopes if s[0] <= pos <= s[1]), key=lambda s: len(s[2]))[2]


def components(graph):
    """The strongly connected components with more than one file (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def shortest_cycle(graph, component, start):
    """A shortest path from `start` back to itself inside the component (breadth first)."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v].keys() & component):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return [start]


def main(dirs):
    if not dirs:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    status = 0
    for src in dirs:
        crate = Crate(src)
        graph = crate.edges()
        name = lambda f: str(f.relative_to(crate.src))
        for component in components(graph):
            status = 1
            print(f"{src}: {len(component)} files in a cycle: {', '.join(map(name, component))}")
            cycle = shortest_cycle(graph, set(component), component[0])
            for a, b in zip(cycle, cycle[1:]):
                print(f"  {name(a)} -> {name(b)}  ({graph[a][b]})")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
