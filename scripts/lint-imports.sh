#!/usr/bin/env bash
# Checks vigil's import contracts (pyproject.toml, [tool.importlinter]) with import-linter's lint-imports.
# Arguments go to lint-imports (e.g. --verbose, --contract layers).
#
# Why not plain `lint-imports`: it finds the modules of `vigil` by walking the one directory Python's import
# machinery names for the package, and in this checkout's editable install that is vigil/ alone; the parts are
# top-level folders that pyproject.toml's package-dir maps into the namespace (vigil.collectors is collectors/).
# So this lays the namespace out as it is installed, as symlinks in a scratch directory, and runs lint-imports
# there: the contracts then see every module of every part.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT

.venv/bin/python - "$tree" <<'PY'
import sys
import tomllib
from pathlib import Path

tree = Path(sys.argv[1])
package_dir = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
parts = {name.removeprefix("vigil."): folder for name, folder in package_dir.items() if name != "vigil"}
if package_dir.get("vigil") != "vigil" or any("." in part for part in parts):
    sys.exit("lint-imports.sh: expected vigil = vigil/ and parts mapped directly under it; update the layout code")
(tree / "vigil").mkdir()
for entry in Path("vigil").iterdir():
    if entry.name not in parts and entry.name != "__pycache__":
        (tree / "vigil" / entry.name).symlink_to(entry.resolve())
for part, folder in parts.items():
    (tree / "vigil" / part).symlink_to(Path(folder).resolve())
PY

cd "$tree"
"$root/.venv/bin/lint-imports" --no-cache --no-logo "$@" "$root/pyproject.toml"
