"""The package layout: one `fewlabel` namespace in the wheel, no bare package imports, the arrow rule between
packages, no import cycles, lazy public APIs, and the options every command takes."""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from fewlabel.retrieval.cli import build_parser, main
from fewlabel.retrieval.cli.options import leaf_parsers

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("indexing", "retrieval", "finetune", "benchmarks")
# folders of data files, listed so setuptools ships them quietly
DATA_PACKAGES = {"fewlabel.retrieval.demo_data", "fewlabel.retrieval.serve.static"}


def package_modules() -> dict[str, Path]:
    """``fewlabel.<package>.<...>`` -> file, for every module of the four packages."""
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(["fewlabel", *parts])] = path
    return out


def test_declared_packages_are_exactly_the_folders():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"fewlabel." + ".".join(p.parent.relative_to(ROOT).parts) for package in PACKAGES
               for p in (ROOT / package).rglob("__init__.py")}
    assert set(config["packages"]) == folders | DATA_PACKAGES
    assert config["package-dir"] == {f"fewlabel.{package}": package for package in PACKAGES}


def test_wheel_holds_only_the_fewlabel_namespace(tmp_path):
    """Built from a clean copy of the sources (a build/ folder in the checkout could hold stale modules)."""
    source = tmp_path / "src"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "results"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copy(ROOT / "LICENSE", source / "LICENSE")
    # setuptools' own build hook, so its warnings are seen: none may be printed (the license table's deprecation,
    # "Package … is absent from the `packages` configuration", …)
    build = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                            "b.build_wheel(sys.argv[1])", str(tmp_path / "dist")],
                           cwd=source, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    noise = [line for line in (build.stdout + build.stderr).splitlines() if "Warning" in line or "!!" in line]
    assert not noise, "\n".join(noise)
    (wheel,) = (tmp_path / "dist").glob("fewlabel-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"fewlabel", wheel.name.split("-py3")[0] + ".dist-info"}
    shipped = {n for n in names if n.endswith(".py")}
    expected = {"fewlabel/" + path.relative_to(ROOT).as_posix() for path in package_modules().values()}
    assert shipped == expected
    assert "fewlabel/retrieval/demo_data/nsmc_train.tsv" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if "/__init__.py" in n and n.count("/") == 1]  # fewlabel/ is a namespace


def imports_of(path: Path, module: str) -> set[str]:
    """The fewlabel modules ``path`` imports, at module level or inside functions (deferred imports count)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imports_of(path, module):
            assert name.split(".")[0] not in PACKAGES, f"{path}: bare import of {name}"
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def test_arrows_between_packages_and_no_cycles():
    """indexing imports none of the others; only retrieval's CLI imports finetune; nothing imports benchmarks;
    no cycle between files (imports inside functions included)."""
    graph = import_graph()
    top = lambda m: m.split(".")[1]  # noqa: E731
    bad = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
           if (top(a) == "indexing" and top(b) != "indexing")
           or (top(b) == "benchmarks" and top(a) != "benchmarks")
           or (top(a) == "retrieval" and top(b) == "finetune" and not a.startswith("fewlabel.retrieval.cli"))]
    assert not bad
    cli = "fewlabel.retrieval.cli"
    importers = {a for a, targets in graph.items() for b in targets if b.startswith(cli) and not a.startswith(cli)}
    assert {top(a) for a in importers} <= {"benchmarks"}, importers  # only `bench` (its shared options)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_help_and_package_imports_load_no_heavy_library():
    code = ("import sys, contextlib, io\n"
            "import fewlabel.indexing, fewlabel.retrieval, fewlabel.finetune\n"
            "from fewlabel.retrieval.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
            "print(sorted(m for m in ('torch', 'faiss', 'transformers', 'sentence_transformers', 'sklearn')"
            " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_public_api_names_resolve():
    import fewlabel.finetune
    import fewlabel.indexing
    import fewlabel.retrieval
    from fewlabel.indexing import Encoder, LabelIndex
    from fewlabel.retrieval import KNNLabeler

    assert Encoder.__module__ == "fewlabel.indexing.encoders.encoder" and LabelIndex and KNNLabeler
    for package in (fewlabel.indexing, fewlabel.retrieval, fewlabel.finetune):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
        with pytest.raises(AttributeError):
            package.no_such_name  # noqa: B018


def test_no_bare_package_module_is_ever_loaded():
    code = ("import importlib, sys\n"
            f"for name in {sorted(package_modules())!r}:\n"
            "    if not name.endswith('__main__'): importlib.import_module(name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {PACKAGES!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert result.stdout.strip() == "[]"


def commands() -> dict[str, argparse.ArgumentParser]:
    return {leaf.prog.removeprefix("fewlabel "): leaf for leaf in leaf_parsers(build_parser())}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def test_every_command_takes_the_options_the_readme_promises():
    """README: every command takes --help and -q/--quiet (before or after its name); every command that encodes
    takes --batch-size, --device, --no-cache and --backend; every command that reads text columns takes --no-header."""
    readme = (ROOT / "docs" / "cli-overview.md").read_text(encoding="utf-8")  # the README links to it
    assert "Every command takes `--help` and `-q/--quiet`" in readme
    found = commands()
    assert {"index build", "predict", "sts score", "finetune re", "re knn", "bench slices"} <= set(found)
    for name, parser in found.items():
        flags = options(parser)
        assert {"-h", "--help", "-q", "--quiet"} <= flags, name
        if "--no-cache" in flags:  # it encodes
            assert {"--batch-size", "--device", "--backend"} <= flags, name
        if "--text-col" in flags:  # it reads text columns
            assert "--no-header" in flags, name
    encoding = {"index build", "index add", "predict", "demo", "sts score", "zeroshot", "re predict", "re knn",
                "bench slices"}
    assert all("--no-cache" in options(found[name]) for name in encoding)


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_before_or_after_the_command(where, tmp_path):
    args = ["index", "info", str(tmp_path / "none")]
    argv = ["-q", *args] if where == "before" else [*args, "--quiet"]
    parsed = build_parser().parse_args(argv)
    assert parsed.quiet is True
    assert build_parser().parse_args(args).quiet is False
    assert main(argv) == 2  # and it runs: the missing index is one line, exit 2


def test_every_option_of_every_command_has_help():
    """Walks every parser (sub-commands and the `bench` plugin included): an option without a help text, or with
    only "(default: …)", fails here."""
    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
                text = (action.help or "").strip()
                if action.help != argparse.SUPPRESS and (not text or text.startswith("(default")):
                    missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "fewlabel")
    assert not missing, missing


def test_max_steps_caps_training_and_never_extends_it(tmp_path):
    """`finetune … --epochs 1 --max-steps 4` on data of 2 steps an epoch trains 2 steps (the epochs' end), and
    --max-steps 1 stops after 1."""
    from fewlabel.finetune.runs import trainer_args
    from fewlabel.finetune.settings import TrainSettings

    def steps(max_steps: int) -> int:
        settings = TrainSettings(epochs=1, batch_size=16, max_steps=max_steps)
        return trainer_args(tmp_path, settings, 32, False, "cpu", False, metric="loss")["max_steps"]

    assert steps(4) == -1  # -1: transformers runs num_train_epochs (1 epoch = 2 steps)
    assert steps(1) == 1
