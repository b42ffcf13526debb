"""Signed policy bundles: a policy directory as one deterministic archive, checked on arrival.

Sits beside `engine.load()`, for moving a reviewed policy set to the gateways that serve
it. `build_bundle` gates a directory as the hot-reload code does (it builds, then its own
tests pass) and packs its policy, test and data files into a `.tar.gz` with a
`manifest.json` (the revision `engine.load` computes, and every file's role, size and
SHA-256) and, given a key, `manifest.sig`: a detached JWS over the manifest's bytes.
`open_bundle` reads an archive it does not trust: bounded in size, regular files with
plain relative names only, each file the manifest lists and no other, each hash right,
the signature good for the given public key, the revision recomputed. Every failure is
one `BundleError` whose message says what was wrong where.

    data = build_bundle("policies", signing_key_pem, catalogue)   # bytes, deterministic
    bundle = open_bundle(data, public_key_pem, require_signature=True)
    bundle.revision, bundle.manifest.files, bundle.signature
    bundle.extract(target)          # engine.load(target).revision == bundle.revision

The JWS is PyJWT's (RFC 7515 compact, unencoded detached payload per RFC 7797); the
algorithm follows the key: ES256 for an EC P-256 key, EdDSA for Ed25519.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, cast

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from jwt.api_jws import PyJWS
from jwt.utils import base64url_encode

from dsl import Diagnostic, Fact
from engine.loader import Role, decode_source, revision_of, role_of
from engine.testing import Refused, TestReport, gate

#: The manifest layout this module writes and reads.
FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
#: The most an archive may unpack to (tar headers included): a gzip bomb stops here.
MAX_UNPACKED_BYTES = 64 * 1024 * 1024

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
_KEY_KINDS = "an EC P-256 key (ES256) or an Ed25519 key (EdDSA)"
_ALGORITHMS = ("ES256", "EdDSA")
_FILE_KEYS = ("path", "role", "sha256", "size")
_ROLES: tuple[Role, ...] = ("policy", "test", "data")


class BundleError(Exception):
    """A bundle was refused. `str(error)` is the one-line reason; a directory refused at
    build time also carries what `idgw policy lint` (`diagnostics`) or `idgw policy test`
    (`report`) would show for it."""

    def __init__(
        self, reason: str, diagnostics: Sequence[Diagnostic] = (), report: TestReport | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.diagnostics = list(diagnostics)
        self.report = report


@dataclass(frozen=True, slots=True)
class BundleFile:
    """One file of a bundle as the manifest lists it."""

    path: str
    role: Role
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "role": self.role, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a bundle holds. Its canonical JSON (sorted keys, no spaces) is what is signed."""

    revision: str
    files: tuple[BundleFile, ...]
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "revision": self.revision, "files": [f.to_dict() for f in self.files]}

    def to_bytes(self) -> bytes:
        return _canonical(self.to_dict())

    @classmethod
    def from_bytes(cls, content: bytes) -> Manifest:
        """The manifest of an archive, which must be in the canonical form `to_bytes` writes."""
        try:
            raw = json.loads(content.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except (UnicodeDecodeError, ValueError) as err:
            raise BundleError(f"{MANIFEST} is not valid JSON: {err}") from None
        if not isinstance(raw, dict) or sorted(raw) != ["files", "format", "revision"]:
            raise BundleError(f"{MANIFEST} must be an object with exactly the keys files, format and revision")
        if raw["format"] != FORMAT or isinstance(raw["format"], bool):
            raise BundleError(f"{MANIFEST} has format {raw['format']!r}; this idgw reads format {FORMAT}")
        if not isinstance(raw["revision"], str) or not raw["revision"].startswith("sha256:"):
            raise BundleError(f"{MANIFEST}: revision must be a `sha256:` string")
        if not isinstance(raw["files"], list):
            raise BundleError(f"{MANIFEST}: files must be a list")
        manifest = cls(revision=raw["revision"], files=tuple(_bundle_file(i, f) for i, f in enumerate(raw["files"])))
        paths = [f.path for f in manifest.files]
        if paths != sorted(set(paths)):
            raise BundleError(f"{MANIFEST}: files must be listed once each, in path order")
        if manifest.to_bytes() != content:
            raise BundleError(f"{MANIFEST} is not in canonical form (sorted keys, no spaces)")
        return manifest


@dataclass(frozen=True, slots=True)
class Signature:
    """Who signed a manifest: the JWS algorithm and key id (the RFC 7638 thumbprint of
    the public key). `verified` is true only when `open_bundle` checked it with a key."""

    algorithm: str
    key_id: str | None
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "key_id": self.key_id, "verified": self.verified}


@dataclass(frozen=True, slots=True)
class Bundle:
    """An archive that passed `open_bundle`'s checks: its manifest, its files' contents by
    path (in path order), and its signature (None when unsigned)."""

    manifest: Manifest
    files: Mapping[str, bytes]
    signature: Signature | None = None

    @property
    def revision(self) -> str:
        return self.manifest.revision

    def extract(self, target_dir: str | Path) -> Path:
        """Write the files under `target_dir` (created; it must be empty), so that
        `engine.load(target_dir)` reads the set this bundle holds."""
        target = Path(target_dir)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise BundleError(f"cannot extract into {target}: it is not an empty directory")
        target.mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            _check_name(name)  # checked on opening; a Bundle made in code is checked here
            path = target.joinpath(*PurePosixPath(name).parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return target


# -- keys ------------------------------------------------------------------------------
def signing_key(pem: bytes) -> PrivateKey:
    """A PEM private key that can sign bundles; BundleError for any other."""
    key = _usable(
        pem, "signing key", "an unencrypted PEM private key",
        lambda data: serialization.load_pem_private_key(data, password=None),
    )
    return cast(PrivateKey, key)  # the private-key reader gives private keys only


def public_key(pem: bytes) -> PublicKey:
    """A PEM public key that can verify bundles; BundleError for any other."""
    return cast(PublicKey, _usable(pem, "public key", "a PEM public key", serialization.load_pem_public_key))


def _usable(pem: bytes, what: str, expected: str, read: Callable[[bytes], object]) -> object:
    """The key `read` finds in `pem`, when it is an Ed25519 or EC P-256 key."""
    try:
        key = read(pem)
    except (ValueError, TypeError) as err:
        raise BundleError(f"the {what} is not {expected}: {_first_line(err)}") from None
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return key
        kind = f"an EC key on {key.curve.name}"
    else:
        kind = "a " + type(key).__name__.removeprefix("_").replace("PrivateKey", "").replace("PublicKey", "") + " key"
    raise BundleError(f"the {what} is {kind}; bundles are signed with {_KEY_KINDS}")


def algorithm_for(key: PrivateKey | PublicKey) -> str:
    """The JWS algorithm a key signs with: ES256 for EC P-256, EdDSA for Ed25519."""
    return "EdDSA" if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey) else "ES256"


def key_id(key: PublicKey) -> str:
    """RFC 7638: SHA-256 of the key's required JWK members (from PyJWT's JWK encoder) as
    compact JSON with sorted keys, base64url without padding."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(key, as_dict=True)
        members = {"crv": jwk["crv"], "kty": "OKP", "x": jwk["x"]}
    else:
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    return base64url_encode(hashlib.sha256(_canonical(members)).digest()).decode("ascii")


# -- build -----------------------------------------------------------------------------
def build_bundle(directory: str | Path, signing_key_pem: bytes | None, catalogue: Mapping[str, Fact]) -> bytes:
    """The bundle of a policy directory, as `.tar.gz` bytes: the same bytes every time for
    the same files (and key, with EdDSA; an ES256 signature is randomised by ECDSA).

    Refused (BundleError) when the directory has errors, as `idgw policy lint` reports
    them, or its own tests fail, as `idgw policy test` reports them: a bundle only ever
    holds a set the gateway's reload gate would accept. `catalogue`: the facts the
    deciding gateway provides, as for `engine.build`.
    """
    root = Path(directory)
    if not root.is_dir():
        raise BundleError(f"{root} is not a directory")
    key = signing_key(signing_key_pem) if signing_key_pem is not None else None
    try:
        result = gate(root, catalogue)
    except Refused as refused:
        raise BundleError(f"{refused}; no bundle was built", refused.diagnostics, refused.report) from None
    assert result.policy_set is not None
    layout = result.layout
    roles: list[tuple[Role, list[Path]]] = [("policy", layout.policies), ("test", layout.tests), ("data", layout.data)]
    files = {path.relative_to(root).as_posix(): (role, path.read_bytes()) for role, paths in roles for path in paths}
    manifest = Manifest(
        revision=_revision({name: content for name, (role, content) in files.items() if role != "test"}),
        files=tuple(
            BundleFile(name, role, hashlib.sha256(content).hexdigest(), len(content))
            for name, (role, content) in sorted(files.items())
        ),
    )
    if manifest.revision != result.policy_set.revision:
        raise BundleError(f"{root} changed while the bundle was built; build it again")
    entries = [(MANIFEST, manifest.to_bytes())]
    if key is not None:
        entries.append((SIGNATURE, _sign(manifest.to_bytes(), key).encode("ascii")))
    entries += [(name, content) for name, (_, content) in sorted(files.items())]
    return _archive(entries)


def _sign(payload: bytes, key: PrivateKey) -> str:
    headers = {"kid": key_id(key.public_key()), "typ": None}  # no `typ`: this is no JWT
    return PyJWS().encode(payload, key, algorithm=algorithm_for(key), headers=headers, is_payload_detached=True)


def _archive(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """A tar.gz whose bytes depend on the entries only: no times, owners or modes of the
    machine that built it, no file name in the gzip header."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(content))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=9, mtime=0) as stream:
        stream.write(tar_bytes.getvalue())
    return packed.getvalue()


# -- open ------------------------------------------------------------------------------
def open_bundle(
    data: bytes, public_key_pem: bytes | None, require_signature: bool, max_size: int = MAX_UNPACKED_BYTES
) -> Bundle:
    """Check an archive and return its contents; BundleError with the reason otherwise.

    With `public_key_pem`, the bundle must be signed by that key (a missing signature is
    refused too); `require_signature` refuses a call without a key. Without a key, a
    signature is read (algorithm, key id) but not checked: the hashes then catch damage,
    not tampering.
    """
    if require_signature and public_key_pem is None:
        raise BundleError("a signature is required, but no public key was given to verify it")
    verifier = public_key(public_key_pem) if public_key_pem is not None else None
    members = _members(_unpacked(data, max_size))
    manifest_bytes = members.pop(MANIFEST, None)
    if manifest_bytes is None:
        raise BundleError(f"the archive has no {MANIFEST}")
    token = members.pop(SIGNATURE, None)
    if verifier is not None and token is None:
        raise BundleError(f"the bundle is not signed ({SIGNATURE} is missing) and a signature is required")
    # The signature first: with a key, an edited manifest is reported as what it is.
    signature = _signature(token, manifest_bytes, verifier) if token is not None else None
    manifest = Manifest.from_bytes(manifest_bytes)
    listed = {f.path: f for f in manifest.files}
    for name in members:
        if name not in listed:
            raise BundleError(f"{name}: in the archive but not in {MANIFEST}")
    for entry in manifest.files:
        content = members.get(entry.path)
        if content is None:
            raise BundleError(f"{entry.path}: listed in {MANIFEST} but missing from the archive")
        if len(content) != entry.size:
            raise BundleError(f"{entry.path}: {len(content)} bytes, but {MANIFEST} says {entry.size}")
        digest = hashlib.sha256(content).hexdigest()
        if digest != entry.sha256:
            raise BundleError(f"{entry.path}: sha256 is {digest}, but {MANIFEST} says {entry.sha256}")
    revision = _revision({f.path: members[f.path] for f in manifest.files if f.role != "test"})
    if revision != manifest.revision:
        raise BundleError(f"the files make revision {revision}, but {MANIFEST} says {manifest.revision}")
    files = {f.path: members[f.path] for f in manifest.files}
    return Bundle(manifest=manifest, files=files, signature=signature)


def _unpacked(data: bytes, max_size: int) -> bytes:
    """The tar stream inside the gzip, read no further than `max_size` bytes."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as stream:
            raw = stream.read(max_size + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise BundleError(f"not a gzip archive: {_first_line(err)}") from None
    if len(raw) > max_size:
        raise BundleError(f"the archive unpacks to more than {max_size:,} bytes (the limit)")
    return raw


def _members(raw: bytes) -> dict[str, bytes]:
    """Each entry's content by name; only regular files with plain relative names."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            for member in archive:
                name = member.name
                _check_name(name)
                if not member.isreg() or member.issparse():
                    raise BundleError(f"{name}: {_kind(member)} entry; a bundle holds regular files only")
                if name in members:
                    raise BundleError(f"{name}: appears twice in the archive")
                stream = archive.extractfile(member)
                members[name] = stream.read() if stream is not None else b""
    except tarfile.TarError as err:
        raise BundleError(f"not a tar archive: {_first_line(err)}") from None
    return members


def _check_name(name: str) -> None:
    path = PurePosixPath(name)
    if not name or path.is_absolute():
        raise BundleError(f"{name!r}: an absolute path; a bundle holds relative paths only")
    if ".." in path.parts or "\\" in name or path.as_posix() != name or any(ord(c) < 32 for c in name):
        raise BundleError(f"{name!r}: not a plain relative path (no `..`, `.`, `//`, backslashes)")


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.isdir():
        return "a directory"
    if member.isdev():
        return "a device or FIFO"
    return "a sparse file" if member.issparse() else "an unsupported"


def _signature(token: bytes, manifest: bytes, verifier: PublicKey | None) -> Signature:
    try:
        header = PyJWS().get_unverified_header(token)
    except jwt.PyJWTError as err:
        raise BundleError(f"{SIGNATURE} is not a compact JWS: {err}") from None
    algorithm, kid = header.get("alg"), header.get("kid")
    if algorithm not in _ALGORITHMS:
        raise BundleError(f"{SIGNATURE} uses algorithm {algorithm!r}; bundles are signed with ES256 or EdDSA")
    kid = kid if isinstance(kid, str) else None
    if verifier is None:
        return Signature(str(algorithm), kid, verified=False)
    expected = algorithm_for(verifier)
    if algorithm != expected:
        raise BundleError(f"{SIGNATURE} is {algorithm}, but the public key is for {expected}")
    try:
        PyJWS().decode_complete(token, verifier, algorithms=[expected], detached_payload=manifest)
    except jwt.PyJWTError as err:
        given = key_id(verifier)
        if kid is not None and kid != given:
            raise BundleError(f"{SIGNATURE} was made by key {kid}, not by the given public key {given}") from None
        raise BundleError(f"{SIGNATURE} does not verify against {MANIFEST} with the given public key: {err}") from None
    return Signature(expected, kid, verified=True)


# -- shared ----------------------------------------------------------------------------
def _revision(files: Mapping[str, bytes]) -> str:
    """The revision `engine.load` gives a directory holding these data and policy files."""
    try:
        return revision_of((name, decode_source(content).encode()) for name, content in files.items())
    except UnicodeDecodeError:
        bad = next(name for name, content in files.items() if not _is_utf8(content))
        raise BundleError(f"{bad}: not UTF-8 text") from None


def _is_utf8(content: bytes) -> bool:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _bundle_file(index: int, raw: object) -> BundleFile:
    where = f"{MANIFEST}: files[{index}]"
    if not isinstance(raw, dict) or sorted(raw) != list(_FILE_KEYS):
        raise BundleError(f"{where} must be an object with exactly the keys {', '.join(_FILE_KEYS)}")
    path, role, sha256, size = (raw[key] for key in _FILE_KEYS)
    if not isinstance(path, str):
        raise BundleError(f"{where}: path must be a string")
    _check_name(path)
    if path in (MANIFEST, SIGNATURE):
        raise BundleError(f"{where}: {path} cannot be listed as a file")
    if role not in _ROLES:
        raise BundleError(f"{where}: role must be one of {', '.join(_ROLES)}, not {role!r}")
    actual = role_of(PurePosixPath(path))
    if role != actual:
        read_as = f"reads it as a {actual} file" if actual else "does not read it"
        raise BundleError(f"{path}: {MANIFEST} says it is a {role} file, but the loader {read_as}")
    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise BundleError(f"{where}: sha256 must be 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BundleError(f"{where}: size must be a whole number of bytes")
    return BundleFile(path, role, sha256, size)


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        twice = next(key for i, (key, _) in enumerate(pairs) if any(key == k for k, _ in pairs[:i]))
        raise ValueError(f"the key {twice!r} appears twice")
    return value


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


__all__ = [
    "FORMAT",
    "MANIFEST",
    "MAX_UNPACKED_BYTES",
    "SIGNATURE",
    "Bundle",
    "BundleError",
    "BundleFile",
    "Manifest",
    "Signature",
    "algorithm_for",
    "build_bundle",
    "key_id",
    "open_bundle",
    "public_key",
    "signing_key",
]
