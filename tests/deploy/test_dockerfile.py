"""The Dockerfile cannot be built here (no Docker engine), so it is checked as data: what it copies exists
and reaches the build context, it installs every vigil package and what the node collector compiles with, it
drops root, its command is a real vigil command, and the wheel it installs carries the non-Python files the
code reads at run time (a `pip install .` leaves out what package-data does not name)."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import tomllib
import zipfile

import pytest

from tests.deploy.manifests import PACKAGES, ROOT, known_variables

DOCKERFILE = ROOT / "Dockerfile"
NODE_COLLECTOR_PACKAGES = {"clang", "llvm", "bpftool", "libbpf-dev"}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last matching pattern wins)."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            ignored = not negate
    return ignored


def test_the_base_is_python_3_11_slim():
    args = dict(re.findall(r"ARG (\w+)=(\S+)", DOCKERFILE.read_text()))
    bases = [args.get(arg.strip("${}"), arg) for op, arg in _instructions() if op == "FROM"
             for arg in [arg.split()[0]]]
    assert bases and all(base.startswith("python:3.11-slim") for base in bases), bases


def test_what_it_copies_exists_in_the_build_context_and_covers_every_package():
    copied = []
    for op, args in _instructions():
        if op == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            copied.extend(source.rstrip("/") for source in sources)
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not _ignored(source), f"COPY {source}: excluded by .dockerignore"
    folders = set(_package_dirs().values())
    assert folders == set(PACKAGES) <= set(copied)
    assert {"pyproject.toml", "README.md"} <= set(copied)  # README.md is the package's readme


def _package_dirs() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def test_every_package_folder_installs_under_the_vigil_namespace():
    """pyproject.toml lists the packages by hand (the folders map into ``vigil.*``): a new folder must be listed."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join([name, *init.parent.relative_to(ROOT / folder).parts])
        for name, folder in _package_dirs().items() for init in (ROOT / folder).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk == listed
    assert all(name == "vigil" or name.startswith("vigil.") for name in listed)


def test_the_image_runs_as_uid_10001_and_installs_the_sensor_toolchain():
    final = _final_stage()
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1] == "10001:10001"
    runs = " ".join(args for op, args in final if op == "RUN")
    assert "--uid 10001" in runs and "--gid 10001" in runs
    installed = set(re.search(r"apt-get install ([^&]+)", runs).group(1).split())
    assert installed >= NODE_COLLECTOR_PACKAGES


def test_the_default_command_and_environment_are_vigils():
    final = _final_stage()
    cmd = json.loads([args for op, args in final if op == "CMD"][-1])  # exec form
    assert cmd == ["vigil", "--help"]  # the components' commands come from compose or the chart
    env_names = set(re.findall(r"\b(VIGIL_\w+)=", " ".join(args for op, args in final if op == "ENV")))
    assert env_names and env_names <= known_variables()


@pytest.mark.timeout(120)
def test_the_installed_package_carries_the_files_the_code_reads(tmp_path):
    """The sensor's C source, the saved hunts and the like are read from the installed package at run time."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(ROOT)], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "wheel").glob("vigil-*.whl"))
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    installed_as = {folder: name.replace(".", "/") for name, folder in _package_dirs().items()}
    data_files = {f"{installed_as[package]}/{path.relative_to(ROOT / package).as_posix()}"
                  for package in PACKAGES for path in (ROOT / package).rglob("*")
                  if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts}
    missing = sorted(data_files - in_wheel)
    assert not missing, f"pyproject.toml [tool.setuptools.package-data] leaves these out of the image: {missing}"
    top_level = {name.split("/")[0] for name in in_wheel if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"vigil"}, f"the wheel puts more than vigil into site-packages: {sorted(top_level)}"
