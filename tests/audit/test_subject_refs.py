"""server.audit.subject_refs: the references are HMAC-SHA256 under the key, exactly as
`hmac` computes them (stored references must stay the same across versions)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from server.audit.subject_refs import SubjectRefs


@pytest.mark.parametrize("size", [16, 32, 63, 64, 65, 200])  # keys longer than a block are hashed first
def test_references_are_hmac_sha256_of_the_key(size: int) -> None:
    key = bytes((7 * i + size) % 256 for i in range(size))
    refs = SubjectRefs(key)
    for user_id in ["user-7", "", "naïve ✓", "x" * 300, "lone \ud800 surrogate"]:
        message = user_id.encode("utf-8", "surrogatepass")
        assert refs.ref(user_id) == hmac.new(key, message, hashlib.sha256).hexdigest()
        assert refs.value_ref(user_id) == "hmac-sha256:" + hmac.new(
            key, b"sensitive-value\x00" + message, hashlib.sha256).hexdigest()
    assert refs.value_ref(12) == "hmac-sha256:" + hmac.new(key, b"sensitive-value\x0012", hashlib.sha256).hexdigest()
    assert refs.ref("a") != refs.value_ref("a").removeprefix("hmac-sha256:")  # a domain of its own
    assert refs.ref("a") == refs.ref("a")  # the prepared states are copied, never used up


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        SubjectRefs(b"k" * 15)
