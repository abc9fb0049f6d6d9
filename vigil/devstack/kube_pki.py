"""The dev cluster's certificates: one CA, a certificate per component, the service-account key pair.

Made with the ``openssl`` command at the first ``vigil dev cluster up`` and kept in the cluster's directory, so a
kubeconfig handed out once stays valid across restarts. A server certificate whose names no longer cover the node's
address (the machine's address changed) is issued again; so is any file that is missing. EC P-256 keys (an RSA key takes
openssl about ten times longer to make, and every component accepts EC), except where a client cannot use one.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from vigil.devstack.errors import DevStackError

_DAYS = "3650"
_KEY_OPTIONS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
_RSA_KEY_OPTIONS = ["-newkey", "rsa:2048"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a certificate names: Kubernetes reads the common name as the user, the organization as its group."""

    stem: str  # file names: <stem>.crt, <stem>.key
    common_name: str
    organization: str = ""
    ip_names: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    server: bool = False
    client: bool = True
    rsa: bool = False  # an RSA key: see the apiserver's cipher suites in kube_cluster

    def key_options(self) -> list[str]:
        return _RSA_KEY_OPTIONS if self.rsa else _KEY_OPTIONS

    def subject(self) -> str:
        organization = f"/O={self.organization}" if self.organization else ""
        return f"{organization}/CN={self.common_name}"

    def extensions(self) -> str:
        usages = [usage for usage, wanted in (("serverAuth", self.server), ("clientAuth", self.client)) if wanted]
        lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={','.join(usages)}"]
        names = [f"IP:{ip}" for ip in self.ip_names] + [f"DNS:{name}" for name in self.dns_names]
        if names:
            lines.append(f"subjectAltName={','.join(names)}")
        return "\n".join(lines) + "\n"


@dataclass(slots=True)
class Authority:
    """The CA in ``directory`` (ca.crt, ca.key) and the certificates it issued there."""

    directory: Path
    issued: list[str] = field(default_factory=list)  # stems issued by this run, for the log

    @property
    def certificate(self) -> Path:
        return self.directory / "ca.crt"

    def ensure(self) -> None:
        """Make the CA unless it exists."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.certificate.exists() and (self.directory / "ca.key").exists():
            return
        _openssl("req", "-x509", "-nodes", *_KEY_OPTIONS, "-keyout", str(self.directory / "ca.key"),
                 "-out", str(self.certificate), "-days", _DAYS, "-subj", "/CN=vigil-dev-cluster-ca",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.issued.append("ca")

    def ensure_certificate(self, identity: Identity) -> tuple[Path, Path]:
        """``identity``'s certificate and key, issued unless they exist, name every wanted address and have
        the wanted kind of key."""
        certificate = self.directory / f"{identity.stem}.crt"
        key = self.directory / f"{identity.stem}.key"
        if key.exists() and certificate.exists() and _still_fits(certificate, identity):
            return certificate, key
        request = self.directory / f"{identity.stem}.csr"
        extensions = self.directory / f"{identity.stem}.ext"
        extensions.write_text(identity.extensions())
        _openssl("req", "-new", "-nodes", *identity.key_options(), "-keyout", str(key), "-out", str(request),
                 "-subj", identity.subject())
        _openssl("x509", "-req", "-in", str(request), "-CA", str(self.certificate),
                 "-CAkey", str(self.directory / "ca.key"), "-CAcreateserial", "-out", str(certificate),
                 "-days", _DAYS, "-extfile", str(extensions))
        request.unlink()
        extensions.unlink()
        self.issued.append(identity.stem)
        return certificate, key

    def ensure_signing_key(self, stem: str) -> tuple[Path, Path]:
        """A key pair (``<stem>.key``, ``<stem>.pub``) that signs and verifies service-account tokens."""
        private, public = self.directory / f"{stem}.key", self.directory / f"{stem}.pub"
        if not (private.exists() and public.exists()):
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", str(private))
            _openssl("pkey", "-in", str(private), "-pubout", "-out", str(public))
            self.issued.append(stem)
        return private, public


def _still_fits(certificate: Path, identity: Identity) -> bool:
    """Whether the certificate names every address and host name ``identity`` wants, with its kind of key."""
    text = _openssl("x509", "-in", str(certificate), "-noout", "-text")
    if ("rsaEncryption" in text) != identity.rsa:
        return False
    present = {part.strip() for line in text.splitlines() for part in line.split(",")}
    wanted = {f"IP Address:{ipaddress.ip_address(ip)}" for ip in identity.ip_names}
    wanted |= {f"DNS:{name}" for name in identity.dns_names}
    return wanted <= present


def _openssl(*args: str) -> str:
    try:
        done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise DevStackError("openssl is not installed: the dev cluster makes its certificates with it") from None
    if done.returncode:
        raise DevStackError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout
