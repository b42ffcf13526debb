"""Signed policy bundles (engine.bundle, `idgw policy bundle`): deterministic archives,
the revision `engine.load` computes, and an archive that fails any check refused with
its reason."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.api_jws import PyJWS

import engine
from engine.bundle import MANIFEST, SIGNATURE, BundleError, build_bundle, open_bundle
from engine.lint import lint
from engine.testing import run_tests
from server.cli import main
from server.facts import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies"
BROKEN = ROOT / "tests" / "fixtures" / "broken"

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
NEW_KEY: dict[str, Callable[[], PrivateKey]] = {
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}

TRANSFER = """\
purposes:
  transfer:
    description: May this transfer go ahead?
    context:
      country: {type: string, required: true}
      amount: {type: number, minimum: 0, required: true}
    rules:
      - if: context.country in data.high_risk_countries
        then: fail
        reason: high_risk_country
      - if: context.amount > data.limits.daily
        then: pass_with_conditions
        reason: over_daily_limit
        conditions: [manual_review]
      - else: pass
        reason: approved
"""
TRANSFER_TESTS = """\
purpose: transfer
cases:
  - name: high risk country fails
    input: {context: {country: XX, amount: 10}}
    expect: {status: fail, reason: high_risk_country}
  - name: over the daily limit needs review
    input: {context: {country: FR, amount: 6000}}
    expect: {status: pass_with_conditions, reason: over_daily_limit, conditions: [manual_review]}
  - name: small transfer passes
    input: {context: {country: FR, amount: 10}}
    expect: {status: pass, reason: approved}
"""
FILES = {
    "transfer.yaml": TRANSFER,
    "tests/transfer.yaml": TRANSFER_TESTS,
    "data/high_risk_countries.yaml": "- XX\n- YY\n",
    "data/limits.json": '{"daily": 5000}\n',
    "README.md": "not a policy file: not in the bundle\n",
    ".hidden.yaml": "skipped by the loader, and by the bundle\n",
}


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A policy directory with a data document in YAML and one in JSON, a test file
    under tests/, and files the loader skips."""
    root = tmp_path / "policies"
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: PrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive}  # type: ignore[union-attr]


def repack(entries: list[tuple[str | tarfile.TarInfo, bytes]]) -> bytes:
    """A .tar.gz of these entries, as a forger would write it (any name, any type)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for entry, content in entries:
            info = entry if isinstance(entry, tarfile.TarInfo) else tarfile.TarInfo(entry)
            if info.isreg():
                info.size = len(content)
            archive.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return raw.getvalue()


def edited(data: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    files = members(data)
    change(files)
    return repack(list(files.items()))


def refused(data: bytes, key: PrivateKey | None = None, required: bool = False, **options: int) -> str:
    with pytest.raises(BundleError) as caught:
        open_bundle(data, public_pem(key) if key is not None else None, required, **options)
    reason = str(caught.value)
    assert "\n" not in reason
    return reason


# -- building --------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", [None, "EdDSA"])
def test_building_twice_gives_the_same_bytes_whatever_the_file_times(policies: Path, algorithm: str | None) -> None:
    pem = private_pem(NEW_KEY[algorithm]()) if algorithm else None
    first = build_bundle(policies, pem, CATALOGUE)
    assert build_bundle(policies, pem, CATALOGUE) == first
    for path in policies.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
        path.chmod(0o755 if path.is_dir() else 0o600)
    assert build_bundle(policies, pem, CATALOGUE) == first
    copy = shutil.copytree(policies, policies.parent / "elsewhere")
    assert build_bundle(copy, pem, CATALOGUE) == first


def test_long_and_non_ascii_paths_round_trip_byte_identical(policies: Path, tmp_path: Path) -> None:
    deep = policies / ("x" * 60) / ("y" * 60) / "données_vérifiées.yaml"
    deep.parent.mkdir(parents=True)
    (policies / "transfer.yaml").rename(deep)
    data = build_bundle(policies, None, CATALOGUE)
    os.utime(deep, (1_000_000_000, 1_000_000_000))
    assert build_bundle(policies, None, CATALOGUE) == data
    bundle = open_bundle(data, None, require_signature=False)
    name = deep.relative_to(policies).as_posix()
    assert bundle.files[name] == TRANSFER.encode()
    target = bundle.extract(tmp_path / "out")
    assert (target / name).read_text() == TRANSFER
    assert engine.load(target, catalogue=CATALOGUE).revision == engine.load(policies, catalogue=CATALOGUE).revision


def test_es256_builds_share_the_manifest_and_each_signature_verifies(policies: Path) -> None:
    key = NEW_KEY["ES256"]()
    first, second = (build_bundle(policies, private_pem(key), CATALOGUE) for _ in range(2))
    assert members(first)[MANIFEST] == members(second)[MANIFEST]
    assert members(first)[SIGNATURE] != members(second)[SIGNATURE]  # ECDSA signatures are randomised
    for data in (first, second):
        assert open_bundle(data, public_pem(key), require_signature=True).signature.verified  # type: ignore[union-attr]


def test_entries_carry_no_trace_of_the_machine_that_built_them(policies: Path) -> None:
    data = build_bundle(policies, None, CATALOGUE)
    assert data[:10] == bytes.fromhex("1f8b0800000000000" + "2ff")[:10]  # no name flag, mtime 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        infos = archive.getmembers()
    assert [i.name for i in infos] == [
        MANIFEST, "data/high_risk_countries.yaml", "data/limits.json", "tests/transfer.yaml", "transfer.yaml",
    ]
    for info in infos:
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, 0, "", "", 0o644)
        assert info.isreg()


def test_manifest_is_canonical_and_lists_every_file(policies: Path) -> None:
    files = members(build_bundle(policies, None, CATALOGUE))
    manifest = json.loads(files[MANIFEST])
    assert files[MANIFEST] == json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    assert manifest["format"] == 1
    assert [(f["path"], f["role"], f["size"]) for f in manifest["files"]] == [
        ("data/high_risk_countries.yaml", "data", 10),
        ("data/limits.json", "data", 16),
        ("tests/transfer.yaml", "test", len(TRANSFER_TESTS)),
        ("transfer.yaml", "policy", len(TRANSFER)),
    ]
    assert all(hashlib.sha256(files[f["path"]]).hexdigest() == f["sha256"] for f in manifest["files"])


@pytest.mark.parametrize("directory", ["shipped", "fixture"])
def test_the_revision_is_the_one_engine_load_computes(policies: Path, directory: str) -> None:
    root = SHIPPED if directory == "shipped" else policies
    data = build_bundle(root, None, CATALOGUE)
    expected = engine.load(root, catalogue=CATALOGUE).revision
    assert json.loads(members(data)[MANIFEST])["revision"] == expected
    assert open_bundle(data, None, require_signature=False).revision == expected


def test_windows_line_ends_keep_the_revision_engine_load_computes(policies: Path, tmp_path: Path) -> None:
    (policies / "transfer.yaml").write_bytes(TRANSFER.replace("\n", "\r\n").encode())
    bundle = open_bundle(build_bundle(policies, None, CATALOGUE), None, require_signature=False)
    assert bundle.files["transfer.yaml"].count(b"\r\n") == TRANSFER.count("\n")  # stored as they are
    assert bundle.revision == engine.load(policies, catalogue=CATALOGUE).revision
    assert engine.load(bundle.extract(tmp_path / "out"), catalogue=CATALOGUE).revision == bundle.revision


@pytest.mark.parametrize("directory", ["shipped", "fixture"])
def test_extracted_bundle_decides_as_the_directory_did(policies: Path, tmp_path: Path, directory: str) -> None:
    root = SHIPPED if directory == "shipped" else policies
    bundle = open_bundle(build_bundle(root, None, CATALOGUE), None, require_signature=False)
    target = bundle.extract(tmp_path / "extracted")
    original, copy = (engine.load(d, catalogue=CATALOGUE) for d in (root, target))
    assert copy.revision == original.revision == bundle.revision

    def outcomes(policy_set: engine.PolicySet) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
        report = run_tests(policy_set)
        assert report.ok and report.passed > 0
        return [(r.name, r.actual.status, r.actual.reason, tuple(r.actual.conditions)) for r in report.results]

    assert outcomes(copy) == outcomes(original)


def test_extract_refuses_a_directory_that_is_not_empty(policies: Path, tmp_path: Path) -> None:
    bundle = open_bundle(build_bundle(policies, None, CATALOGUE), None, require_signature=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "stray.yaml").write_text("purposes: {}\n")
    with pytest.raises(BundleError, match="not an empty directory"):
        bundle.extract(tmp_path / "busy")


def test_a_directory_with_errors_is_refused_with_the_diagnostics_lint_shows() -> None:
    directory = BROKEN / "errors"
    with pytest.raises(BundleError) as caught:
        build_bundle(directory, None, CATALOGUE)
    assert str(caught.value) == f"{directory} has 9 errors; no bundle was built"
    assert caught.value.diagnostics == lint([directory], catalogue=CATALOGUE)
    assert caught.value.report is None


def test_a_directory_whose_tests_fail_is_refused_with_the_test_report(policies: Path) -> None:
    (policies / "tests" / "transfer.yaml").write_text(TRANSFER_TESTS.replace("reason: approved", "reason: ok"))
    with pytest.raises(BundleError) as caught:
        build_bundle(policies, None, CATALOGUE)
    assert str(caught.value) == f"{policies}: its tests do not pass (1 failed); no bundle was built"
    report = caught.value.report
    assert report is not None and [r.mismatches for r in report.failures] == [
        ("reason: expected ok, got approved",)
    ]


def test_invalid_test_files_refuse_the_build_too() -> None:
    with pytest.raises(BundleError, match=r"its tests do not pass \(1 failed, 5 error\(s\) in test files\)") as caught:
        build_bundle(BROKEN / "test_errors", None, CATALOGUE)
    assert caught.value.report is not None
    assert {d.code for d in caught.value.report.errors} >= {"E402", "E403"}


@pytest.mark.parametrize(
    ("make_key", "message"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "the signing key is a RSA key"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "the signing key is an EC key on secp384r1"),
    ],
)
def test_other_keys_are_refused_with_the_kinds_that_sign(
    policies: Path, make_key: Callable[[], rsa.RSAPrivateKey], message: str
) -> None:
    with pytest.raises(BundleError) as caught:
        build_bundle(policies, private_pem(make_key()), CATALOGUE)  # type: ignore[arg-type]
    assert str(caught.value) == f"{message}; bundles are signed with an EC P-256 key (ES256) or an Ed25519 key (EdDSA)"


def test_a_key_that_is_not_pem_is_refused(policies: Path) -> None:
    with pytest.raises(BundleError, match="the signing key is not an unencrypted PEM private key"):
        build_bundle(policies, b"not a key", CATALOGUE)
    with pytest.raises(BundleError, match="the public key is not a PEM public key"):
        open_bundle(build_bundle(policies, None, CATALOGUE), b"not a key", require_signature=True)


# -- opening: signatures -----------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_a_signed_bundle_verifies_with_its_public_key(policies: Path, algorithm: str) -> None:
    key = NEW_KEY[algorithm]()
    bundle = open_bundle(build_bundle(policies, private_pem(key), CATALOGUE), public_pem(key), require_signature=True)
    assert bundle.signature is not None
    assert (bundle.signature.algorithm, bundle.signature.verified) == (algorithm, True)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", bundle.signature.key_id or "")
    token = members(build_bundle(policies, private_pem(key), CATALOGUE))[SIGNATURE]
    assert re.fullmatch(rb"[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]+", token)  # compact, payload detached
    assert PyJWS().get_unverified_header(token) == {
        "alg": algorithm, "b64": False, "crit": ["b64"], "kid": bundle.signature.key_id,
    }


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_a_wrong_key_is_refused_naming_both_keys(policies: Path, algorithm: str) -> None:
    signer, other = NEW_KEY[algorithm](), NEW_KEY[algorithm]()
    data = build_bundle(policies, private_pem(signer), CATALOGUE)
    signed_by = open_bundle(data, None, require_signature=False).signature
    assert signed_by is not None and not signed_by.verified
    reason = refused(data, other, required=True)
    assert reason.startswith(f"{SIGNATURE} was made by key {signed_by.key_id}, not by the given public key ")


def test_a_key_of_the_other_algorithm_is_refused(policies: Path) -> None:
    data = build_bundle(policies, private_pem(NEW_KEY["EdDSA"]()), CATALOGUE)
    assert refused(data, NEW_KEY["ES256"](), required=True) == f"{SIGNATURE} is EdDSA, but the public key is for ES256"


def test_a_stripped_signature_is_refused_when_a_signature_is_required(policies: Path) -> None:
    key = NEW_KEY["EdDSA"]()
    stripped = edited(build_bundle(policies, private_pem(key), CATALOGUE), lambda files: files.pop(SIGNATURE))
    assert refused(stripped, key, required=True) == (
        f"the bundle is not signed ({SIGNATURE} is missing) and a signature is required"
    )
    assert refused(stripped, required=True) == "a signature is required, but no public key was given to verify it"
    assert open_bundle(stripped, None, require_signature=False).signature is None


def test_an_edited_manifest_fails_the_signature(policies: Path) -> None:
    key = NEW_KEY["ES256"]()

    def change_revision(files: dict[str, bytes]) -> None:
        files[MANIFEST] = files[MANIFEST].replace(b'"revision":"sha256:', b'"revision":"sha256:0')

    data = edited(build_bundle(policies, private_pem(key), CATALOGUE), change_revision)
    assert refused(data, key, required=True) == (
        f"{SIGNATURE} does not verify against {MANIFEST} with the given public key: Signature verification failed"
    )


# -- opening: tampering ------------------------------------------------------------------
def test_one_changed_byte_of_a_policy_is_refused_naming_the_file(policies: Path) -> None:
    key = NEW_KEY["EdDSA"]()
    original = build_bundle(policies, private_pem(key), CATALOGUE)

    def flip(files: dict[str, bytes]) -> None:
        content = bytearray(files["transfer.yaml"])
        content[content.index(b"high_risk_country")] = ord("H")
        files["transfer.yaml"] = bytes(content)

    tampered = edited(original, flip)
    manifest = json.loads(members(original)[MANIFEST])
    expected = next(f["sha256"] for f in manifest["files"] if f["path"] == "transfer.yaml")
    reason = refused(tampered, key, required=True)
    assert re.fullmatch(rf"transfer\.yaml: sha256 is [0-9a-f]{{64}}, but {MANIFEST} says {expected}", reason)
    assert refused(tampered) == reason  # the hashes are checked with no key too


def test_a_rehashed_file_without_the_revision_changed_is_refused(policies: Path) -> None:
    original = build_bundle(policies, None, CATALOGUE)

    def rewrite(files: dict[str, bytes]) -> None:
        files["data/limits.json"] = b'{"daily": 9}\n'
        manifest = json.loads(files[MANIFEST])
        for entry in manifest["files"]:
            if entry["path"] == "data/limits.json":
                entry["sha256"] = hashlib.sha256(files["data/limits.json"]).hexdigest()
                entry["size"] = len(files["data/limits.json"])
        files[MANIFEST] = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()

    reason = refused(edited(original, rewrite))
    assert re.fullmatch(rf"the files make revision sha256:[0-9a-f]{{64}}, but {MANIFEST} says sha256:[0-9a-f]{{64}}", reason)


def test_a_size_that_differs_from_the_manifest_is_refused(policies: Path) -> None:
    data = edited(build_bundle(policies, None, CATALOGUE), lambda f: f.update({"transfer.yaml": f["transfer.yaml"] + b"#"}))
    assert refused(data) == f"transfer.yaml: {len(TRANSFER) + 1} bytes, but {MANIFEST} says {len(TRANSFER)}"


def test_an_added_file_is_refused(policies: Path) -> None:
    data = edited(build_bundle(policies, None, CATALOGUE), lambda f: f.update({"extra.yaml": b"purposes: {}\n"}))
    assert refused(data) == f"extra.yaml: in the archive but not in {MANIFEST}"


def test_a_removed_file_is_refused(policies: Path) -> None:
    data = edited(build_bundle(policies, None, CATALOGUE), lambda f: f.pop("data/limits.json"))
    assert refused(data) == f"data/limits.json: listed in {MANIFEST} but missing from the archive"


def test_an_archive_without_a_manifest_is_refused(policies: Path) -> None:
    data = edited(build_bundle(policies, None, CATALOGUE), lambda f: f.pop(MANIFEST))
    assert refused(data) == f"the archive has no {MANIFEST}"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m.update(format=2), f"{MANIFEST} has format 2; this idgw reads format 1"),
        (lambda m: m.update(extra=1), f"{MANIFEST} must be an object with exactly the keys files, format and revision"),
        (lambda m: m["files"][3].update(role="test"),
         f"transfer.yaml: {MANIFEST} says it is a test file, but the loader reads it as a policy file"),
        (lambda m: m["files"].reverse(), f"{MANIFEST}: files must be listed once each, in path order"),
        (lambda m: m["files"][0].update(size=-1), f"{MANIFEST}: files[0]: size must be a whole number of bytes"),
        (lambda m: m["files"][0].update(path="../x.yaml"),
         "'../x.yaml': not a plain relative path (no `..`, `.`, `//`, backslashes)"),
    ],
)
def test_a_malformed_manifest_is_refused(
    policies: Path, change: Callable[[dict[str, object]], None], reason: str
) -> None:
    def rewrite(files: dict[str, bytes]) -> None:
        manifest = json.loads(files[MANIFEST])
        change(manifest)
        files[MANIFEST] = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()

    assert refused(edited(build_bundle(policies, None, CATALOGUE), rewrite)) == reason


def test_a_manifest_not_in_canonical_form_is_refused(policies: Path) -> None:
    def indent(files: dict[str, bytes]) -> None:
        files[MANIFEST] = json.dumps(json.loads(files[MANIFEST]), indent=2).encode()

    data = edited(build_bundle(policies, None, CATALOGUE), indent)
    assert refused(data) == f"{MANIFEST} is not in canonical form (sorted keys, no spaces)"
    twice = edited(data, lambda f: f.update({MANIFEST: b'{"format":1,"format":1}'}))
    assert refused(twice) == f"{MANIFEST} is not valid JSON: the key 'format' appears twice"


def _link(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("../evil.yaml", "'../evil.yaml': not a plain relative path (no `..`, `.`, `//`, backslashes)"),
        ("tests/../../evil.yaml", "'tests/../../evil.yaml': not a plain relative path (no `..`, `.`, `//`, backslashes)"),
        ("/etc/evil.yaml", "'/etc/evil.yaml': an absolute path; a bundle holds relative paths only"),
        ("./transfer.yaml", "'./transfer.yaml': not a plain relative path (no `..`, `.`, `//`, backslashes)"),
        ("a\\b.yaml", "'a\\\\b.yaml': not a plain relative path (no `..`, `.`, `//`, backslashes)"),
        (_link("evil.yaml", tarfile.SYMTYPE, "/etc/passwd"),
         "evil.yaml: a symbolic link (to '/etc/passwd') entry; a bundle holds regular files only"),
        (_link("evil.yaml", tarfile.LNKTYPE, "transfer.yaml"),
         "evil.yaml: a hard link (to 'transfer.yaml') entry; a bundle holds regular files only"),
        (_link("evil.yaml", tarfile.CHRTYPE), "evil.yaml: a device or FIFO entry; a bundle holds regular files only"),
        (_link("evil.yaml", tarfile.FIFOTYPE), "evil.yaml: a device or FIFO entry; a bundle holds regular files only"),
        (_link("data", tarfile.DIRTYPE), "data: a directory entry; a bundle holds regular files only"),
    ],
)
def test_unsafe_entries_are_refused(policies: Path, entry: str | tarfile.TarInfo, reason: str) -> None:
    genuine = list(members(build_bundle(policies, None, CATALOGUE)).items())
    forged: list[tuple[str | tarfile.TarInfo, bytes]] = [*genuine, (entry, b"purposes: {}\n")]
    assert refused(repack(forged)) == reason


def test_a_name_that_appears_twice_is_refused(policies: Path) -> None:
    genuine = list(members(build_bundle(policies, None, CATALOGUE)).items())
    forged: list[tuple[str | tarfile.TarInfo, bytes]] = [*genuine, ("transfer.yaml", TRANSFER.encode())]
    assert refused(repack(forged)) == "transfer.yaml: appears twice in the archive"


def test_a_gzip_bomb_stops_at_the_size_limit() -> None:
    """65 MiB of zeros in one entry, 65 KiB compressed: refused at the default 64 MiB."""
    header = tarfile.TarInfo("bomb.yaml")
    header.size = 65 * 1024 * 1024
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = bytes(1024 * 1024)
    parts = [packer.compress(header.tobuf(format=tarfile.PAX_FORMAT))]
    parts += [packer.compress(chunk) for _ in range(65)]
    bomb = b"".join([*parts, packer.flush()])
    assert len(bomb) < 1024 * 1024
    assert refused(bomb) == "the archive unpacks to more than 67,108,864 bytes (the limit)"


def test_the_size_limit_can_be_lowered(policies: Path) -> None:
    data = build_bundle(policies, None, CATALOGUE)
    assert refused(data, max_size=4096) == "the archive unpacks to more than 4,096 bytes (the limit)"
    assert open_bundle(data, None, require_signature=False, max_size=len(gzip.decompress(data))).files


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"plain text", "not a gzip archive: Not a gzipped file (b'pl')"),
        (gzip.compress(b"x" * 600), "not a tar archive: invalid header"),
    ],
)
def test_what_is_not_a_tar_gz_is_refused(data: bytes, reason: str) -> None:
    assert refused(data) == reason


def test_a_truncated_archive_is_refused(policies: Path) -> None:
    data = build_bundle(policies, None, CATALOGUE)
    assert refused(data[: len(data) // 2]).startswith("not a gzip archive: ")


# -- the commands ------------------------------------------------------------------------
def idgw(*args: str) -> Result:
    """`idgw ARGS...` in-process, through the console script's click group."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env={"NO_COLOR": "1"})


@pytest.fixture
def key_files(tmp_path: Path) -> Callable[[str], tuple[Path, Path]]:
    def write(algorithm: str) -> tuple[Path, Path]:
        key = NEW_KEY[algorithm]()
        private, public = tmp_path / f"{algorithm}.pem", tmp_path / f"{algorithm}.pub"
        private.write_bytes(private_pem(key))
        public.write_bytes(public_pem(key))
        return private, public

    return write


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_build_verify_inspect(
    policies: Path, tmp_path: Path, key_files: Callable[[str], tuple[Path, Path]], algorithm: str
) -> None:
    private, public = key_files(algorithm)
    output = tmp_path / "bundle.tar.gz"
    revision = engine.load(policies, catalogue=CATALOGUE).revision
    built = idgw("policy", "bundle", "build", str(policies), "-o", str(output), "--signing-key", str(private))
    assert built.exit_code == 0, built.output
    bundle = open_bundle(output.read_bytes(), public.read_bytes(), require_signature=True)
    assert bundle.signature is not None
    kid = bundle.signature.key_id
    assert built.stdout == (
        f"built {output}: revision {revision}, 4 files, {output.stat().st_size:,} bytes, "
        f"signed with {algorithm} by key {kid}\n"
    )

    verified = idgw("policy", "bundle", "verify", str(output), "--public-key", str(public))
    assert (verified.exit_code, verified.stdout) == (
        0, f"OK {output}: revision {revision}, 4 files, signed with {algorithm} by key {kid}\n"
    )

    text = idgw("policy", "bundle", "inspect", str(output))
    assert text.exit_code == 0
    assert f"revision  {revision}\n" in text.stdout
    assert f"signature {algorithm}, key id {kid} (not verified here)\n" in text.stdout
    assert re.search(rf"\n  policy +{len(TRANSFER)}  transfer\.yaml\n", text.stdout)
    assert re.search(r"  data +16  data/limits\.json\n", text.stdout)

    shown = json.loads(idgw("policy", "bundle", "inspect", "--format", "json", str(output)).stdout)
    assert shown["revision"] == revision
    assert shown["signature"] == {"algorithm": algorithm, "key_id": kid, "verified": False}
    assert [(f["path"], f["role"]) for f in shown["files"]] == [
        ("data/high_risk_countries.yaml", "data"), ("data/limits.json", "data"),
        ("tests/transfer.yaml", "test"), ("transfer.yaml", "policy"),
    ]


def test_verify_fails_with_the_reason(
    policies: Path, tmp_path: Path, key_files: Callable[[str], tuple[Path, Path]]
) -> None:
    private, _ = key_files("EdDSA")
    _, other = key_files("ES256")
    output = tmp_path / "bundle.tar.gz"
    assert idgw("policy", "bundle", "build", str(policies), "-o", str(output), "--signing-key", str(private)).exit_code == 0
    wrong = idgw("policy", "bundle", "verify", str(output), "--public-key", str(other))
    assert (wrong.exit_code, wrong.stdout) == (1, "")
    assert wrong.stderr == f"error: {output}: {SIGNATURE} is EdDSA, but the public key is for ES256\n"

    unsigned = tmp_path / "unsigned.tar.gz"
    assert idgw("policy", "bundle", "build", str(policies), "-o", str(unsigned)).exit_code == 0
    result = idgw("policy", "bundle", "verify", str(unsigned), "--public-key", str(other))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {unsigned}: the bundle is not signed ({SIGNATURE} is missing) and a signature is required\n"
    )
    text = idgw("policy", "bundle", "inspect", str(unsigned))
    assert "signature none\n" in text.stdout


def test_a_key_file_that_is_no_key_is_a_usage_error(policies: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN NOTHING-----\n")
    result = idgw("policy", "bundle", "build", str(policies), "-o", str(tmp_path / "b.tgz"), "--signing-key", str(junk))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {junk}: the signing key is not an unencrypted PEM private key")
    assert not (tmp_path / "b.tgz").exists()


def test_build_refuses_a_failing_directory_showing_what_lint_and_test_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # diagnostics name files as given
    output = tmp_path / "bundle.tar.gz"
    errors = str((BROKEN / "errors").relative_to(ROOT))
    linted = idgw("policy", "lint", errors)
    result = idgw("policy", "bundle", "build", errors, "-o", str(output))
    assert result.exit_code == 1
    assert result.stdout == linted.stdout
    assert result.stderr == f"error: {errors} has 9 errors; no bundle was built\n"

    failing = str((BROKEN / "test_errors").relative_to(ROOT))
    tested = idgw("policy", "test", failing)
    result = idgw("policy", "bundle", "build", failing, "-o", str(output))
    assert result.exit_code == 1
    assert result.stdout == tested.stdout
    assert "its tests do not pass" in result.stderr
    assert not output.exists()


def test_inspect_refuses_a_tampered_bundle(policies: Path, tmp_path: Path) -> None:
    output = tmp_path / "bundle.tar.gz"
    output.write_bytes(
        edited(build_bundle(policies, None, CATALOGUE), lambda f: f.update({"extra.yaml": b"purposes: {}\n"}))
    )
    result = idgw("policy", "bundle", "inspect", str(output))
    assert (result.exit_code, result.stderr) == (1, f"error: {output}: extra.yaml: in the archive but not in {MANIFEST}\n")


@pytest.mark.parametrize("command", ["build", "verify", "inspect"])
def test_help_of_every_bundle_command_shows_an_example(command: str) -> None:
    result = idgw("policy", "bundle", command, "--help")
    assert result.exit_code == 0
    assert result.stdout.split("Example:\n", 1)[1].lstrip().startswith(f"idgw policy bundle {command}")


def test_the_docs_describe_every_manifest_field(policies: Path) -> None:
    docs = (ROOT / "docs" / "bundles.md").read_text()
    described = set(re.findall(r"^\| `([a-z0-9_\[\].]+)` \|", docs.split("## The manifest", 1)[1].split("##", 1)[0], re.M))
    manifest = json.loads(members(build_bundle(policies, None, CATALOGUE))[MANIFEST])
    fields = set(manifest) | {f"files[].{key}" for key in manifest["files"][0]}
    assert described == fields
