"""The documentation stays true to the repository: the README is short, every path the docs name
exists, and docs/design.md covers every package of the layout (the layers of .importlinter) and
every module of those packages."""
from __future__ import annotations

import argparse
import ast
import configparser
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README_MAX_LINES = 200
PATH_SUFFIXES = (".py", ".md", ".yaml", ".ipynb")
# Folders the commands create (gitignored): named in the docs, never in a checkout.
GENERATED = ("reports/", "benchmarks/results/", "lakehouse/", "lakehouse-eval/", ".venv/", "dist/", "build/")
# Documents whose paths must exist now. docs/history.md is left out: it may name files as they were.
CHECKED_DOCS = ("README.md", "docs/design.md", "docs/environment.md", "benchmarks/README.md")

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def named_paths(markdown: str) -> list[str]:
    """What a Markdown text names as repository paths in inline code: spans without spaces that
    contain `/` or end in .py/.md/.yaml/.ipynb; URLs, templates (`<...>`), absolute and home paths,
    dotted names (`udfs.rows.evened`, `a.b=c`) and generated folders are not repository paths.
    In fenced blocks, the words that end in one of those suffixes (`jobs/cli.py` after spark-submit)."""
    names = [span for span in INLINE_CODE.findall(FENCE.sub("", markdown))]
    for block in FENCE.findall(markdown):
        names += [word for word in block.split() if word.endswith(PATH_SUFFIXES)]
    paths = []
    for name in names:
        name = name.strip().rstrip(".,:;)").removeprefix("./")
        if any(c in name for c in " <>*=$~") or "://" in name or name.startswith(("/", "-")):
            continue
        if not ("/" in name or name.endswith(PATH_SUFFIXES)):
            continue
        if name.startswith(GENERATED) or name.rstrip("/") + "/" in GENERATED:
            continue
        paths.append(name)
    return paths


def exists(name: str) -> bool:
    """A file or folder, or a module named without `.py` (`lake/file_writer`), or a module and a
    name it defines (`signals/runner.run_signal`: `def run_signal` in signals/runner.py)."""
    if (REPO / name).exists() or (REPO / f"{name}.py").exists():
        return True
    folder, _, last = name.rpartition("/")
    module, _, attribute = last.partition(".")
    source = REPO / folder / f"{module}.py"
    if not attribute or not source.is_file():
        return False
    defined = re.compile(rf"^\s*(def|class)\s+{re.escape(attribute)}\b|^{re.escape(attribute)}\s*[:=]", re.MULTILINE)
    return bool(defined.search(source.read_text()))


def missing_paths(markdown: str) -> list[str]:
    return sorted({p for p in named_paths(markdown) if not exists(p)})


# `content-signals CMD [SUB] ... --flag` (or `jobs/cli.py CMD ...` after spark-submit), on one line of code.
INVOCATION = re.compile(r"(?:content-signals|jobs/cli\.py)\s+([a-z][a-z-]*)((?:[ \t]+[^\s`#;|&]+)*)")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def unknown_invocations(markdown: str) -> list[str]:
    """The `content-signals` commands and flags a Markdown text names that the CLI's parser lacks:
    in fenced blocks (comments cut) and inline code; a subcommand (`labels import`) is followed."""
    from jobs.cli import _parser  # the standard library only: no Spark, no torch

    commands = _subcommands(_parser())
    lines = [line.split("#")[0] for block in FENCE.findall(markdown) for line in block.splitlines()]
    unknown = []
    for text in lines + INLINE_CODE.findall(FENCE.sub("", markdown)):
        for match in INVOCATION.finditer(text):
            name, words = match[1], match[2].split()
            if name not in commands:
                unknown.append(f"content-signals {name}")
                continue
            parser = commands[name]
            steps = _subcommands(parser)
            if steps and words and words[0] in steps:
                parser, name = steps[words[0]], f"{name} {words[0]}"
            known = {option for action in parser._actions for option in action.option_strings}
            unknown += [f"content-signals {name} {flag}" for word in words if word.startswith("--")
                        for flag in [word.split("=")[0].rstrip(".,:;)")] if flag not in known]
    return sorted(set(unknown))


def layout_packages() -> list[str]:
    """The top-level packages of the layout: the root packages .importlinter checks."""
    config = configparser.ConfigParser()
    config.read(REPO / ".importlinter")
    return config["importlinter"]["root_packages"].split()


def test_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines: move detail to docs/"


def test_readme_names_make_test() -> None:
    assert "make test" in (REPO / "README.md").read_text()  # the CI hook and a newcomer's first command


@pytest.mark.parametrize("doc", CHECKED_DOCS)
def test_every_path_a_doc_names_exists(doc: str) -> None:
    assert (REPO / doc).exists(), f"{doc} is missing"
    assert missing_paths((REPO / doc).read_text()) == [], f"{doc} names paths that do not exist"


def layer_order() -> dict[str, int]:
    """Each package's layer in .importlinter, counted from the top (packages on one line share one)."""
    config = configparser.ConfigParser()
    config.read(REPO / ".importlinter")
    lines = config["importlinter:contract:layers"]["layers"].split("\n")
    return {name.strip(): depth for depth, line in enumerate(filter(None, lines)) for name in line.split("|")}


def packages_out_of_layer_order(markdown: str) -> list[str]:
    """The packages a layers table lists above a package of a higher layer: the table says that a
    package imports only those below it, so it must run from the top layer down."""
    order = layer_order()
    listed = [name for name, _ in re.findall(r"^\| `([a-z_]+)/` \|(.*)$", markdown, re.MULTILINE) if name in order]
    return [below for above, below in zip(listed, listed[1:]) if order[below] < order[above]]


@pytest.mark.parametrize("doc", ("README.md", "docs/design.md"))
def test_the_layers_tables_run_from_the_top_layer_down(doc: str) -> None:
    assert packages_out_of_layer_order((REPO / doc).read_text()) == [], f"{doc}'s layers table is not in .importlinter's order"


def test_the_layer_order_check_can_fail() -> None:
    assert packages_out_of_layer_order("| `jobs/` | x |\n| `lake/` | x |\n| `conf/` | x |") == []
    assert packages_out_of_layer_order("| `signals/` | x |\n| `conf/` | x |\n| `udfs/` | x |") == ["conf", "udfs"]


def test_design_says_which_packages_never_import_pyspark() -> None:
    """Each package .importlinter forbids pyspark says so in its row of docs/design.md's layers table."""
    config = configparser.ConfigParser()
    config.read(REPO / ".importlinter")
    forbidden = config["importlinter:contract:signals-without-spark"]["source_modules"].split()
    rows = layer_rows((REPO / "docs" / "design.md").read_text())
    assert [p for p in forbidden if "never pyspark" not in rows[p].rsplit("|", 2)[-2]] == []


def test_design_names_every_package_of_the_layout() -> None:
    design = (REPO / "docs" / "design.md").read_text()
    packages = layout_packages()
    assert {"signals", "conf", "udfs", "lake", "rollout", "sample_corpus", "jobs", "benchmarks"} <= set(packages)
    assert [p for p in packages if f"`{p}/`" not in design] == []


def layer_rows(design: str) -> dict[str, str]:
    """docs/design.md's table of the layers: each package's row, by package."""
    rows = re.findall(r"^\| `([a-z_]+)/` \|(.*)$", design, re.MULTILINE)
    return dict(rows)


def unmapped_modules(package: str, row: str) -> list[str]:
    """The modules of a package (`__init__.py` aside) that its row names neither by path nor by a folder above them."""
    named = [span.rstrip("/") for span in INLINE_CODE.findall(row)]
    modules = [path.relative_to(REPO).as_posix() for path in (REPO / package).rglob("*.py") if path.name != "__init__.py"]
    return sorted(m for m in modules if not any(m == n or m.startswith(f"{n}/") for n in named if n != package))


def test_design_maps_every_module_of_its_packages() -> None:
    """The layers' table says which files each package holds: a module added without a word there is missing from it
    (the benchmarks' files are described in benchmarks/README.md)."""
    rows = layer_rows((REPO / "docs" / "design.md").read_text())
    assert {p: m for p in layout_packages() if p != "benchmarks" and (m := unmapped_modules(p, rows[p]))} == {}


def test_the_module_map_check_can_fail() -> None:
    assert unmapped_modules("retrieval", "`retrieval/build.py` (build), `retrieval/` itself") == [
        "retrieval/embedding_rows.py", "retrieval/index_store.py", "retrieval/quality.py", "retrieval/vector_index.py",
        "retrieval/writer_lock.py"]
    assert unmapped_modules("signals", "`signals/video/`, `signals/video/shots`") == [
        m for m in unmapped_modules("signals", "") if not m.startswith("signals/video/")]


def test_the_path_checks_can_fail() -> None:
    """The path check on texts that break it: a moved file, a notebook gone, a bare file name."""
    assert missing_paths("see `jobs/delta_io.py` and `lake/delta_io.py`") == ["jobs/delta_io.py"]
    assert missing_paths("```bash\npython notebooks/gone.ipynb\n```") == ["notebooks/gone.ipynb"]
    assert missing_paths("`base.py`, `conf/<profile>.yaml`, `s3://b/x`, `udfs.rows.evened`, `reports/eval`") == ["base.py"]
    assert missing_paths("`signals/runner.run_signal`, `lake/file_writer`, `signals/runner.no_such`") == ["signals/runner.no_such"]


@pytest.mark.parametrize("doc", (*CHECKED_DOCS, "docs/tables.md"))
def test_every_command_and_flag_a_doc_names_exists(doc: str) -> None:
    assert unknown_invocations((REPO / doc).read_text()) == [], f"{doc} names commands or flags jobs/cli.py lacks"


def test_the_command_check_can_fail() -> None:
    """A renamed command, a flag of another command, a subcommand's flag, in both kinds of code."""
    text = ("`content-signals backfil --start 2026-01-01`, `content-signals refresh --full --slice-pct 5`\n"
            "```bash\n.venv/bin/content-signals labels import f.json --task t --n 3   # --nope in a comment\n```\n"
            "```bash\nspark-submit --master m jobs/cli.py dedup --profile p --dry-run\n```")
    assert unknown_invocations(text) == ["content-signals backfil", "content-signals labels import --n", "content-signals refresh --slice-pct"]


def bench_steps(source: str) -> list[str]:
    """The steps `make bench` can leave out: benchmarks/bench.py's flags that take `off`."""
    return re.findall(r'add_argument\("(--[a-z-]+)", choices=\([^)]*"off"[^)]*\)', source)


def steps_not_described(readme: str, steps: list[str]) -> list[str]:
    """The steps whose flag the prose of a benchmarks README's "How it measures" never names."""
    section = readme.split("## How it measures", 1)[-1].split("\n## ", 1)[0]
    prose = FENCE.sub("", section)
    return [step for step in steps if f"`{step}" not in prose]


def test_how_the_benchmark_measures_describes_every_step() -> None:
    steps = bench_steps((REPO / "benchmarks" / "bench.py").read_text())
    assert {"--gpu", "--uri", "--hostile", "--index", "--serving", "--video", "--year"} <= set(steps)
    assert steps_not_described((REPO / "benchmarks" / "README.md").read_text(), steps) == []


def test_the_bench_step_check_can_fail() -> None:
    readme = "## How it measures\n- **GPU** (`--gpu auto`)\n```bash\nbench --video off\n```\n## Targets\n`--year on`"
    assert steps_not_described(readme, ["--gpu", "--video", "--year"]) == ["--video", "--year"]


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by basename (rootdir-relative, no packages): two folders with
    one name of a test module fail the whole collection."""
    names = [path.name for path in (REPO / "tests").rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


def test_the_wheel_ships_every_package_of_the_layout_but_the_benchmarks() -> None:
    """A package left out of setup.py's list is missing on executors that get the code from the wheel."""
    shipped = ast.literal_eval(re.search(r"^PACKAGES = (\[.*?\])", (REPO / "setup.py").read_text(), re.MULTILINE)[1])
    assert sorted(shipped) == sorted(set(layout_packages()) - {"benchmarks"})
