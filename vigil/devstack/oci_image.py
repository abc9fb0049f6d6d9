"""OCI image tarballs made from Debian's static busybox, for a containerd that cannot pull.

No container registry is reachable here, so the dev cluster's images (its pod sandbox "pause" image and the
busybox test image) are written as OCI image-layout tarballs and imported with ``ctr images import``: one layer,
busybox and a symlink per applet, the image name in the index's annotations.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

BUSYBOX = Path("/bin/busybox")
_DIRECTORIES = ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "run", "var", "var/tmp")
_LAYER = "application/vnd.oci.image.layer.v1.tar"
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_CONFIG = "application/vnd.oci.image.config.v1+json"


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    """Every applet this busybox has (``busybox --list``): the image links each one, as busybox images do."""
    listed = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True, timeout=10)
    return sorted({name for name in listed.stdout.split() if name and "/" not in name} - {"busybox"})


def write_busybox_image(path: Path, name: str, entrypoint: list[str], applets: list[str] | None = None,
                        busybox: Path = BUSYBOX, files: Mapping[str, Path] = MappingProxyType({})) -> None:
    """Write an OCI image-layout tarball at ``path``: image ``name`` (``registry/repo:tag``) whose one layer holds
    ``busybox`` as /bin/busybox with a link per applet (all of them by default) and ``files`` (path in the image:
    file on this host, e.g. a program a test compiled), started as ``entrypoint``."""
    layer = _busybox_layer(busybox, busybox_applets(busybox) if applets is None else applets, files)
    layer_digest = _digest(layer)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": _MANIFEST,
        "config": {"mediaType": _CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": _LAYER, "digest": layer_digest, "size": len(layer)}],
    }).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": _MANIFEST, "digest": _digest(manifest), "size": len(manifest),
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}],
    }).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for blob in (layer, config, manifest):
        files[f"blobs/sha256/{_digest(blob).split(':')[1]}"] = blob
    with tarfile.open(path, mode="w") as tar:
        for member, blob in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def _busybox_layer(busybox: Path, applets: list[str], files: Mapping[str, Path]) -> bytes:
    parents = {str(parent) for member in files for parent in Path(member).parents if str(parent) != "."}
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for directory in _DIRECTORIES + tuple(sorted(parents - set(_DIRECTORIES))):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory in ("tmp", "var/tmp") else 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for applet in applets:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
        for member, source in files.items():
            tar.add(source, member)
    return layer.getvalue()


def _digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()
