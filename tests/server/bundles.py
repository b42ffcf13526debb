"""Helpers of the bundle-source tests: signing keys, bundles of a policy directory (and
damaged ones), and `BundleServer`, a small threaded HTTP server that serves files with
ETags and answers `If-None-Match` with 304, as a CDN or nginx would.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from engine.bundle import build_bundle
from server.facts import CATALOGUE

MINOR = {
    "sanctions_listed": False, "citizen_valid": True, "is_over_18": False, "has_credential": False,
    "context": {"national_id": "AB123456"},
}


def key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """An Ed25519 key pair as PEM files: (private, public)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def bundle_of(policy_dir: Path, signing_key: Path | None) -> bytes:
    return build_bundle(policy_dir, signing_key.read_bytes() if signing_key else None, CATALOGUE)


def variant(policy_dir: Path, target: Path, old: str, new: str) -> Path:
    """A copy of `policy_dir` at `target` with `old` replaced by `new` in every file."""
    shutil.copytree(policy_dir, target)
    for path in target.rglob("*.yaml"):
        path.write_text(path.read_text().replace(old, new))
    return target


def tampered(bundle: bytes, path: str) -> bytes:
    """`bundle` with one byte of the file `path` changed, manifest and signature kept."""
    entries: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bundle)), mode="r") as archive:
        for member in archive.getmembers():
            stream = archive.extractfile(member)
            assert stream is not None
            content = stream.read()
            if member.name == path:
                index = content.index(b"underage") if b"underage" in content else 0
                content = content[:index] + bytes([content[index] ^ 0x20]) + content[index + 1:]
            entries.append((member, content))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member, content in entries:
            archive.addfile(member, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


class BundleServer:
    """Serves `publish`ed bytes by path on a loopback port with a strong ETag (the
    content's SHA-256); counts requests and 304s. `stop()` closes the port."""

    def __init__(self, port: int = 0) -> None:
        self.files: dict[str, bytes] = {}
        self.requests = 0
        self.not_modified = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.requests += 1
                    content = outer.files.get(self.path)
                if content is None:
                    self.send_error(404)
                    return
                etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
                if self.headers.get("If-None-Match") == etag:
                    with outer._lock:
                        outer.not_modified += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/bundle.tar.gz") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def publish(self, content: bytes, path: str = "/bundle.tar.gz") -> None:
        with self._lock:
            self.files[path] = content

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
