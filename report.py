"""
Fill the READMEs' numbers and tables from the committed results JSON.

    python report.py             # render every X.src.md into the X.md beside it (READMEs, docs/)
    python report.py --check     # exit 1 naming each X.md that differs from what its source renders to

A X.src.md is the page with its numbers left as references into results/:
    {{token_suite/mqar/summary.json conditions.pretrained.errors.8.mean .4f}}   one number: file, dotted key, format
    <!-- alias mqar = token_suite/mqar/summary.json -->                          a short name for a file (not rendered)
    {{mqar conditions.pretrained.errors.8.mean .4f}}                            a number through the short name
    {{table summary mqar}}                                                       a whole table (tables.py: summary,
                                                                                 summary-regime, regime, search)
The format is Python's (.4f, ,.0f, .1% for a fraction shown as a percentage, +.3f). Edit the source,
never the page beside it; tests/test_results_readme.py fails when the two disagree, so a number
in a README cannot drift from its JSON.
"""
import argparse
import re
import sys
from pathlib import Path

import tables
from runs import REPO, UserError, run_main

RESULTS = REPO / "results"
ALIAS = re.compile(r"^<!-- alias (\S+) = (\S+) -->\n", re.M)
FIELD = re.compile(r"\{\{(.+?)\}\}")


def sources(root=REPO):
    return sorted(p for p in root.rglob("*.src.md") if ".git" not in p.parts)


def render(src, results=RESULTS):
    """The README text a source renders to. Errors name the source file and line."""
    text = Path(src).read_text()
    aliases = dict(ALIAS.findall(text))
    text = ALIAS.sub("", text)
    cache = {}

    def data(name):
        path = aliases.get(name, name)
        if path not in cache:
            cache[path] = tables.load(results / path)
        return cache[path]

    def fill(m):
        where = f"{src}:{text.count(chr(10), 0, m.start()) + 1}"
        parts = m.group(1).split()
        try:
            if parts[0] == "table":
                kind, name = parts[1:]
                if kind not in tables.TABLES:
                    raise ValueError(f"unknown table kind {kind!r} (choose from {', '.join(tables.TABLES)})")
                return tables.TABLES[kind](data(name))
            name, key, fmt = parts
            return format(tables.lookup(data(name), key), fmt)
        except KeyError as e:
            raise UserError(f"{where}: {{{{{m.group(1)}}}}}: no key {e} in the JSON")
        except (ValueError, TypeError, IndexError) as e:
            raise UserError(f"{where}: {{{{{m.group(1)}}}}}: {e}")

    return FIELD.sub(fill, text)


def target(src):
    return Path(src).with_name(Path(src).name.replace(".src.md", ".md"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a README.md is not what its source renders to")
    args = p.parse_args()
    stale = []
    for src in sources():
        text = render(src)
        out = target(src)
        if args.check:
            if not out.exists() or out.read_text() != text:
                stale.append(str(out.relative_to(REPO)))
            continue
        if not out.exists() or out.read_text() != text:
            out.write_text(text)
            print(f"wrote {out.relative_to(REPO)}")
    if stale:
        print(f"out of date (run python report.py): {', '.join(stale)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
