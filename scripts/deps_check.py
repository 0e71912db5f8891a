#!/usr/bin/env python3
"""The dependency policy in deny.toml, checked over `cargo metadata`.

What `cargo deny check licenses bans sources` checks for the keys deny.toml
uses, without installing cargo-deny (a long build): run by scripts/deps-check.
Differences from cargo-deny: a path package outside the workspace fails here;
a crate's licence is its Cargo.toml `license` only (no licence-file scan, so a
crate without an SPDX expression fails); `cargo metadata` may list a few
optional packages that are never built (reqwest's quinn), which makes this
check stricter, never looser.

- sources: every package outside the workspace comes from an allowed
  registry; git sources and other registries fail, and so does a path
  package outside the workspace (cargo-deny lets those pass; a vendored
  copy is how a patched dependency would slip in);
- bans: no crate listed with `deny-multiple-versions` resolves to two
  versions (all targets, dev-dependencies included), except versions in
  `skip`; a `*` requirement fails unless `allow-wildcard-paths` covers it;
- licences: every package's SPDX expression is satisfiable with `allow`
  plus its crate's `exceptions`; a package without one fails.

Python 3.11 standard library only. Exit status 0 when the policy holds,
1 when it does not, 2 when deny.toml uses a key this script does not know.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

KNOWN_KEYS = {
    "graph": {"all-features"},
    "licenses": {"allow", "confidence-threshold", "exceptions"},
    "bans": {
        "multiple-versions",
        "multiple-versions-include-dev",
        "wildcards",
        "allow-wildcard-paths",
        "deny",
        "skip",
    },
    "sources": {"unknown-registry", "unknown-git", "allow-registry", "allow-git"},
}


def policy_errors(policy: dict) -> list[str]:
    """Keys this script would silently ignore: refuse them instead."""
    errors = []
    for section, value in policy.items():
        if section not in KNOWN_KEYS:
            errors.append(f"[{section}]")
            continue
        errors += [f"[{section}] {k}" for k in value if k not in KNOWN_KEYS[section]]
    bans = policy.get("bans", {})
    for entry in bans.get("deny", []):
        if not isinstance(entry, dict) or set(entry) != {"crate", "deny-multiple-versions"}:
            errors.append(f"[bans] deny entry {entry!r} (only deny-multiple-versions bans)")
    if bans.get("multiple-versions", "allow") != "allow":
        errors.append("[bans] multiple-versions other than \"allow\"")
    if not bans.get("multiple-versions-include-dev", False):
        errors.append("[bans] multiple-versions-include-dev = false")
    if policy.get("sources", {}).get("allow-git"):
        errors.append("[sources] allow-git entries")
    for key in ("unknown-registry", "unknown-git"):
        if policy.get("sources", {}).get(key, "deny") != "deny":
            errors.append(f"[sources] {key} other than \"deny\"")
    if bans.get("wildcards", "deny") != "deny":
        errors.append("[bans] wildcards other than \"deny\"")
    return errors


# --- SPDX expressions -------------------------------------------------------

TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z0-9.+\-]+)")


def tokens(expr: str) -> list[str]:
    # crates.io still carries the old `MIT/Apache-2.0` form; it means OR.
    expr = expr.replace("/", " OR ")
    out, pos = [], 0
    while pos < len(expr.rstrip()):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot parse licence expression {expr!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def satisfiable(expr: str, allowed: set[str]) -> bool:
    """Whether the expression can be met using only `allowed` licences.

    Grammar (SPDX): or := and ('OR' and)*; and := term ('AND' term)*;
    term := '(' or ')' | id ['WITH' exception]. An id with an exception
    counts only when "id WITH exception" itself is allowed.
    """
    toks = tokens(expr)
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(toks):
            raise ValueError(f"licence expression ends early: {expr!r}")
        pos += 1
        return toks[pos - 1]

    def parse_or() -> bool:
        ok = parse_and()
        while peek() == "OR":
            take()
            ok = parse_and() or ok
        return ok

    def parse_and() -> bool:
        ok = parse_term()
        while peek() == "AND":
            take()
            ok = parse_term() and ok
        return ok

    def parse_term() -> bool:
        tok = take()
        if tok == "(":
            ok = parse_or()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in {expr!r}")
            return ok
        if tok in ("AND", "OR", "WITH", ")"):
            raise ValueError(f"unexpected {tok!r} in {expr!r}")
        if peek() == "WITH":
            take()
            return f"{tok} WITH {take()}" in allowed
        return tok in allowed

    ok = parse_or()
    if pos != len(toks):
        raise ValueError(f"trailing {toks[pos]!r} in {expr!r}")
    return ok


# --- the checks -------------------------------------------------------------


def spec_matches(spec: str, name: str, version: str) -> bool:
    """`name` or `name@version` (an exact version, as deny.toml uses)."""
    if "@" in spec:
        n, v = spec.split("@", 1)
        return n == name and v == version
    return spec == name


def check(policy: dict, meta: dict) -> tuple[list[str], list[str]]:
    """(failures, notes) for the packages of one `cargo metadata` resolve."""
    failures: list[str] = []
    members = set(meta["workspace_members"])
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    in_graph = [packages[i] for i in nodes]

    # sources
    registries = {"registry+" + r for r in policy["sources"].get("allow-registry", [])}
    for p in sorted(in_graph, key=lambda p: (p["name"], p["version"])):
        if p["id"] in members:
            continue
        src = p.get("source")
        if src is None:
            failures.append(f"source: {p['name']} {p['version']} is a path outside the workspace ({p['manifest_path']})")
        elif src.startswith("git+"):
            failures.append(f"source: {p['name']} {p['version']} comes from git: {src}")
        elif src not in registries:
            failures.append(f"source: {p['name']} {p['version']} comes from a registry not allowed: {src}")

    # bans: duplicates
    bans = policy.get("bans", {})
    single = {e["crate"] for e in bans.get("deny", []) if e.get("deny-multiple-versions")}
    skip = [s["crate"] if isinstance(s, dict) else s for s in bans.get("skip", [])]
    versions: dict[str, list[dict]] = defaultdict(list)
    for p in in_graph:
        versions[p["name"]].append(p)
    dependents: dict[str, set[str]] = defaultdict(set)
    for n in nodes.values():
        for d in n["deps"]:
            dependents[d["pkg"]].add(packages[n["id"]]["name"])
    other_dupes = []
    for name, pkgs in sorted(versions.items()):
        if len(pkgs) < 2:
            continue
        # A crate whose only dependent is another version of itself (the
        # semver trick) is not a second copy; cargo-deny ignores it too.
        pkgs = [p for p in pkgs if dependents[p["id"]] != {name}]
        counted = [p for p in pkgs if not any(spec_matches(s, name, p["version"]) for s in skip)]
        vs = ", ".join(sorted(p["version"] for p in pkgs))
        if name in single and len(counted) > 1:
            why = []
            for p in sorted(counted, key=lambda p: p["version"]):
                by = sorted(dependents[p["id"]])
                why.append(f"{p['version']} (by {', '.join(by) or 'the workspace'})")
            failures.append(f"bans: {name} has {len(counted)} versions: {'; '.join(why)}")
        elif name in single and len(pkgs) > 1:
            other_dupes.append(f"{name} ({vs}; skipped in deny.toml: {', '.join(s for s in skip if s.startswith(name + '@'))})")
        elif len(pkgs) > 1:
            other_dupes.append(f"{name} ({vs})")

    # bans: wildcards
    allow_paths = bans.get("allow-wildcard-paths", False)
    for p in in_graph:
        private = p.get("publish") == []
        for d in p["dependencies"]:
            if d["req"] != "*":
                continue
            if allow_paths and d.get("path") and (private or d.get("kind") == "dev"):
                continue
            failures.append(f"bans: {p['name']} depends on {d['name']} with the wildcard requirement \"*\"")

    # licences
    allow = set(policy["licenses"].get("allow", []))
    exceptions: dict[str, set[str]] = defaultdict(set)
    for e in policy["licenses"].get("exceptions", []):
        exceptions[e["crate"]] |= set(e["allow"])
    for p in sorted(in_graph, key=lambda p: (p["name"], p["version"])):
        expr = p.get("license")
        who = f"{p['name']} {p['version']}"
        if not expr:
            failures.append(f"licence: {who} has no SPDX licence expression (license-file: {p.get('license_file')})")
            continue
        extra = set()
        for spec, ids in exceptions.items():
            if spec_matches(spec, p["name"], p["version"]):
                extra |= ids
        try:
            if not satisfiable(expr, allow | extra):
                failures.append(f"licence: {who} is {expr!r}, not in the allowed set")
        except ValueError as e:
            failures.append(f"licence: {who}: {e}")

    notes = [f"{len(in_graph)} packages checked"]
    if other_dupes:
        notes.append(f"crates in two or more versions, allowed: {', '.join(other_dupes)}")
    return failures, notes


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    with open(root / "deny.toml", "rb") as f:
        policy = tomllib.load(f)
    unknown = policy_errors(policy)
    if unknown:
        for u in unknown:
            print(f"deps-check: deny.toml uses {u}, which scripts/deps_check.py does not check; extend it", file=sys.stderr)
        return 2
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked"]
    out = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, check=False)
    if out.returncode != 0:
        print(f"deps-check: `{' '.join(cmd)}` failed (is Cargo.lock up to date?)", file=sys.stderr)
        return 1
    failures, notes = check(policy, json.loads(out.stdout))
    for n in notes:
        print(f"deps-check: {n}", flush=True)
    for f in failures:
        print(f"deps-check: FAIL {f}", file=sys.stderr)
    if failures:
        print(f"deps-check: {len(failures)} violation(s) of deny.toml", file=sys.stderr)
        return 1
    print("deps-check: ok (licences, bans, sources)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
