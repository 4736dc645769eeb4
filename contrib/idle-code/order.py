#!/usr/bin/env python3
"""Writes the linker script that packs the code smshub runs at rest together.

usage: order.py CALLGRIND_OUT BINARY > ../../link/idle-code.ld

CALLGRIND_OUT is a callgrind dump that covers only the daemon at rest (profile.sh makes it);
BINARY is the unstripped smshub it profiled. Every function of BINARY that ran in the dump
becomes a section pattern: the link places those functions' sections (rustc and the `cc`
crate put each function in its own `.text.<symbol>` section) side by side in `.text.idle`.

The patterns leave out what changes from build to build or target to target, so a script
made on x86_64 still matches an aarch64 build and survives most code changes:
- legacy Rust symbols (`_ZN...17h<hash>E`): the hash becomes `?` x 16;
- v0 Rust symbols (`_R...`, the standard library): crate disambiguators (`Cs<id>_`) and
  back-references (`B<n>_`), whose values shift with them, become `*`;
- C functions: GCC's clone suffixes (`.constprop.0`, `.isra.0`, `.part.0`) become `.*`.
Each replacement is a wildcard that matches what it replaced, so a pattern always matches
the function it came from; a stale pattern matches nothing and costs nothing.

A wildcard also takes in the other instances of a generic function, which the daemon may never
run at rest. So the script lists the functions in two groups: first the exact symbols that ran
(they match the build that was profiled and builds of the same code for the same target), then
the patterns. A build that matches the exact names gets the code that ran packed first and the
extra instances after it; any other build still gets all of them side by side.
"""
import os
import re
import sys


def functions(dump, binary):
    """Names of the functions of `binary` that have a cost line in the callgrind `dump`.

    valgrind 3.19 does not tie a second code section to its file: functions already in
    `.text.idle` (a binary linked with an earlier script) show as object `???`, so those count
    as ours too; their names still come from the binary's symbol table."""
    ours = {os.path.realpath(binary), "???"}
    names, ob = set(), None
    with open(dump, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("ob="):
                name = line[3:].strip()
                ob = name if name == "???" else os.path.realpath(name)
            elif line.startswith("fn=") and ob in ours:
                names.add(re.sub(r"'\d+$", "", line[3:].strip()))  # callgrind's recursion marker
    return names


def patterns(name):
    """Section patterns for one function symbol."""
    if name.startswith("0x") or name.startswith("(") or not name:
        return []
    if name.startswith("_ZN"):
        return [".text." + re.sub(r"17h[0-9a-f]{16}E$", "17h" + "?" * 16 + "E", name)]
    if name.startswith("_R"):
        glob = re.sub(r"Cs[0-9A-Za-z]*_", "*", name)
        glob = re.sub(r"B[0-9A-Za-z]*_", "*", glob)
        return [".text." + re.sub(r"\*+", "*", glob)]
    base = name.split(".", 1)[0]
    return [".text." + base, ".text." + base + ".*"]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    names = functions(sys.argv[1], sys.argv[2])
    if not names:
        sys.exit(f"no function of {sys.argv[2]} in {sys.argv[1]}")
    exact = sorted(".text." + n for n in names if patterns(n))
    globs = sorted({p for n in names for p in patterns(n)})
    bad = [g for g in exact + globs if not re.fullmatch(r"[A-Za-z0-9_.$*?]+", g)]
    if bad:
        sys.exit(f"patterns with characters a linker script cannot take unquoted: {bad[:5]}")
    out = sys.stdout
    out.write(
        "/* The code smshub runs at rest, packed together (ARCHITECTURE.md \"Memory at rest\").\n"
        "   Written by contrib/idle-code/order.py from a callgrind profile of `smshub bench idle`\n"
        f"   ({len(names)} functions); run contrib/idle-code/profile.sh to write it again.\n"
        "   Added to the default layout by build.rs (INSERT: nothing else moves). */\n"
        "SECTIONS\n{\n  .text.idle :\n  {\n"
    )
    for group in (exact, globs):
        out.write("    *(\n")
        for g in group:
            out.write(f"      {g}\n")
        out.write("    )\n")
    out.write("  }\n}\nINSERT BEFORE .text;\n")


if __name__ == "__main__":
    main()
