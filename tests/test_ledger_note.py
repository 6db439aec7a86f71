"""Tests of consentry.ledger.note: C2SP signed notes, checkpoints and tlog proofs.

The PeterNeumann / EnochRoot keys and signatures are the published test data of Go's
golang.org/x/mod/sumdb/note, so passing them shows byte-for-byte interoperability.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consentry.errors import InvalidInputError, VerificationError
from consentry.ledger import note
from consentry.ledger.merkle import (
    MemoryNodeStore,
    inclusion_proof_from_nodes,
    leaf_hash,
    root_from_nodes,
)
from consentry.ledger.note import (
    MAX_SIGNATURES,
    TLOG_PROOF_HEADER,
    Checkpoint,
    Signer,
    TlogProof,
    Verifier,
    generate_signer,
    key_id,
    open_note,
    parse_signer_key,
    parse_tlog_proof,
    parse_verifier_key,
    sign_note,
    verify_tlog_proof,
)

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfq"
    "dngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwn"
    "WLox33WWd1RvMc+QQ=\n"
)


# --- keys -----------------------------------------------------------------------------------


def test_go_signer_key_signs_like_go() -> None:
    signer = parse_signer_key(PETER_SKEY)
    assert signer.key_id == 0xC74F20A3
    assert signer.to_skey() == PETER_SKEY
    assert signer.verifier().to_vkey() == PETER_VKEY
    assert sign_note(TEXT, signer.name, signer.private_key) == TEXT + "\n" + PETER_SIG
    assert signer.sign(TEXT) == TEXT + "\n" + PETER_SIG


def test_go_verifier_key_parses() -> None:
    verifier = parse_verifier_key(PETER_VKEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.key_id == 0xC74F20A3 == key_id(verifier.name, verifier.public_key)
    assert verifier.to_vkey() == PETER_VKEY


def test_generated_keys_round_trip() -> None:
    skey, vkey = generate_signer("example.com/log")
    signer, verifier = parse_signer_key(skey), parse_verifier_key(vkey)
    assert signer.verifier() == verifier
    assert skey.startswith("PRIVATE+KEY+example.com/log+")
    assert vkey.startswith(f"example.com/log+{verifier.key_id:08x}+")
    text, names = open_note(signer.sign("hello\n"), [vkey])
    assert (text, names) == ("hello\n", ["example.com/log"])


def _b64_key(type_byte: int, key: bytes) -> str:
    return base64.b64encode(bytes([type_byte]) + key).decode()


PETER_PUBLIC = parse_verifier_key(PETER_VKEY).public_key


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20ax+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
        "PeterNeumann+c74f20a3+" + _b64_key(0x02, PETER_PUBLIC),
        "PeterNeumann+c74f20a3+" + _b64_key(0x01, PETER_PUBLIC[:31]),
    ],
)
def test_malformed_verifier_keys_are_rejected(vkey: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_verifier_key(vkey)


@pytest.mark.parametrize(
    "skey",
    [
        PETER_VKEY,
        "PRIVATE+KEY+PeterNeumann+c74f20a3",
        "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDF",
        "PRIVATE+KEY+Peter+Neumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    ],
)
def test_malformed_signer_keys_are_rejected(skey: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_signer_key(skey)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\tb", "a\x01b"])
def test_invalid_key_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidInputError):
        generate_signer(name)
    with pytest.raises(InvalidInputError):
        Verifier(name, PETER_PUBLIC)


def test_verifier_needs_a_32_byte_key() -> None:
    with pytest.raises(InvalidInputError, match="32 bytes"):
        Verifier("a", b"\x00" * 31)


# --- signed notes ---------------------------------------------------------------------------


def test_open_go_note_with_one_known_key() -> None:
    text, names = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER_VKEY])
    assert text == TEXT
    assert names == ["PeterNeumann"]


def test_open_go_note_with_both_keys_and_bytes_input() -> None:
    note_bytes = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    verifiers: list[Verifier | str] = [parse_verifier_key(PETER_VKEY), ENOCH_VKEY]
    assert open_note(note_bytes, verifiers) == (TEXT, ["PeterNeumann", "EnochRoot"])


def test_repeated_signatures_are_listed_once() -> None:
    signed = TEXT + "\n" + PETER_SIG + PETER_SIG
    assert open_note(signed, [PETER_VKEY]) == (TEXT, ["PeterNeumann"])


def test_text_may_contain_blank_lines() -> None:
    signer = parse_signer_key(PETER_SKEY)
    text = "first\n\nsecond\n\n"
    assert open_note(signer.sign(text), [PETER_VKEY]) == (text, ["PeterNeumann"])


def test_unknown_keys_only_are_rejected() -> None:
    with pytest.raises(VerificationError, match=r"no signature from a trusted key.*PeterNeumann"):
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])


def test_wrong_key_with_the_same_name_is_unknown() -> None:
    _, other_vkey = generate_signer("PeterNeumann")
    with pytest.raises(VerificationError, match="no signature from a trusted key"):
        open_note(TEXT + "\n" + PETER_SIG, [other_vkey])


def test_unknown_key_name_is_rejected() -> None:
    signer = Signer("someone.example", Ed25519PrivateKey.generate())
    with pytest.raises(VerificationError, match="no signature from a trusted key"):
        open_note(signer.sign(TEXT), [PETER_VKEY])


def test_tampered_text_is_rejected() -> None:
    tampered = TEXT.replace("cryptography", "cryptograpHy") + "\n" + PETER_SIG
    with pytest.raises(VerificationError, match="invalid signature from key PeterNeumann"):
        open_note(tampered, [PETER_VKEY])


def test_tampered_signature_is_rejected() -> None:
    tampered_sig = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(VerificationError, match="invalid signature"):
        open_note(TEXT + "\n" + tampered_sig, [PETER_VKEY])
    flipped = PETER_SIG.replace("Zb6KE", "Zb6KF")
    with pytest.raises(VerificationError, match="invalid signature"):
        open_note(TEXT + "\n" + flipped, [PETER_VKEY])
    # The first four bytes are the key ID: changing them makes the key unknown.
    other_id = PETER_SIG.replace("x08go", "x08gp")
    with pytest.raises(VerificationError, match=r"signed by PeterNeumann\+c74f20a7"):
        open_note(TEXT + "\n" + other_id, [PETER_VKEY])


def test_a_bad_known_signature_rejects_the_note_even_with_a_good_one() -> None:
    bad_enoch = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    with pytest.raises(VerificationError, match="EnochRoot"):
        open_note(TEXT + "\n" + PETER_SIG + bad_enoch, [PETER_VKEY, ENOCH_VKEY])


@pytest.mark.parametrize(
    "signed",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\r\n" + PETER_SIG,
        TEXT
        + "\n"
        + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSN=\n",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG + "\n",
        TEXT + "\n" + "- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAc=\n",
        TEXT + "\n" + "— PeterNeumann\n",
        TEXT + "\n" + "— PeterNeumann x08go!\n",
        TEXT + "\n" + "— PeterNeumann x08g\n",
        TEXT + "\n" + "— PeterNeumann AAAAAA==\n",
        TEXT + "\n" + PETER_SIG.replace("AM=", "AN="),
        TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1),
        "\ud800" + TEXT + "\n" + PETER_SIG,
    ],
)
def test_malformed_notes_are_rejected(signed: str) -> None:
    with pytest.raises(VerificationError):
        open_note(signed, [PETER_VKEY])


def test_invalid_utf8_bytes_are_rejected() -> None:
    with pytest.raises(VerificationError, match="UTF-8"):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [PETER_VKEY])


@pytest.mark.parametrize(
    ("text", "name"), [("no newline", "a"), ("bell \x07\n", "a"), ("ok\n", "a b")]
)
def test_sign_note_rejects_bad_input(text: str, name: str) -> None:
    with pytest.raises(InvalidInputError):
        sign_note(text, name, Ed25519PrivateKey.generate())


def test_ambiguous_trusted_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two keys with the same name and key ID need a 32-bit ID collision; fake one.
    monkeypatch.setattr(note, "key_id", lambda name, public_key: 1)
    first = Verifier("log", b"\x01" * 32)
    second = Verifier("log", b"\x02" * 32)
    with pytest.raises(InvalidInputError, match="share name and ID log"):
        open_note(TEXT + "\n" + PETER_SIG, [first, second])


# --- checkpoints ----------------------------------------------------------------------------

ROOT = bytes(range(32))


def test_checkpoint_round_trip() -> None:
    checkpoint = Checkpoint("example.com/log", 20852163, ROOT, ("ext one", "ext two"))
    text = checkpoint.to_text()
    assert text == (
        "example.com/log\n20852163\n" + base64.b64encode(ROOT).decode() + "\next one\next two\n"
    )
    assert Checkpoint.parse(text) == checkpoint
    assert Checkpoint.parse(Checkpoint("o", 0, ROOT).to_text()).size == 0


ROOT_B64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "newline"),
        ("origin\n5\n" + ROOT_B64, "newline"),
        ("origin\n", "1 lines"),
        ("origin\n5\n", "2 lines"),
        ("\n5\n" + ROOT_B64 + "\n", "origin"),
        ("origin\n5a\n" + ROOT_B64 + "\n", "decimal"),
        ("origin\n-5\n" + ROOT_B64 + "\n", "decimal"),
        ("origin\n+5\n" + ROOT_B64 + "\n", "decimal"),
        ("origin\n05\n" + ROOT_B64 + "\n", "decimal"),
        ("origin\n 5\n" + ROOT_B64 + "\n", "decimal"),
        ("origin\n\uff15\n" + ROOT_B64 + "\n", "decimal"),
        ("origin\n\n" + ROOT_B64 + "\n", "decimal"),
        ("origin\n5\nnot base64!\n", "base64"),
        ("origin\n5\n" + ROOT_B64[:-1] + "\n", "base64"),
        ("origin\n5\n" + base64.b64encode(ROOT[:31]).decode() + "\n", "31 bytes"),
        ("origin\n5\n" + ROOT_B64 + "\n\n", "extension"),
        ("origin\n5\n" + ROOT_B64 + "\next\x00\n", "extension"),
    ],
)
def test_checkpoint_parse_errors(text: str, match: str) -> None:
    with pytest.raises(VerificationError, match=match):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        ("o", -1, ROOT, ()),
        ("o", True, ROOT, ()),
        ("o", 1, ROOT[:31], ()),
        ("o", 1, ROOT, ("",)),
    ],
)
def test_checkpoint_constructor_checks(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidInputError):
        Checkpoint(origin, size, root, extensions)


# --- tlog proofs ----------------------------------------------------------------------------

ORIGIN = "example.com/consentry-log"
ENTRIES = [f"entry {i}".encode() for i in range(7)]


@pytest.fixture(scope="module")
def log_signer() -> Signer:
    return Signer(ORIGIN, Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def witness_signer() -> Signer:
    return Signer("witness.example", Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def store() -> MemoryNodeStore:
    return MemoryNodeStore(leaf_hash(entry) for entry in ENTRIES)


def _checkpoint_note(store: MemoryNodeStore, *signers: Signer, size: int = 7) -> str:
    text = Checkpoint(ORIGIN, size, root_from_nodes(size, store)).to_text()
    signed = signers[0].sign(text)
    for signer in signers[1:]:
        # Cosignatures are further signature lines over the same text.
        signed += signer.sign(text).split("\n\n")[-1]
    return signed


def _proof_text(store: MemoryNodeStore, note_text: str, index: int = 3) -> str:
    hashes = inclusion_proof_from_nodes(index, 7, store)
    return TlogProof(index, tuple(hashes), note_text).to_text()


def test_tlog_proof_round_trip_and_verify(
    store: MemoryNodeStore, log_signer: Signer, witness_signer: Signer
) -> None:
    note_text = _checkpoint_note(store, log_signer, witness_signer)
    hashes = tuple(inclusion_proof_from_nodes(3, 7, store))
    proof = TlogProof(3, hashes, note_text, extra=b"vrf proof")
    text = proof.to_text()
    lines = text.split("\n")
    assert lines[0] == TLOG_PROOF_HEADER
    assert lines[1] == "extra " + base64.b64encode(b"vrf proof").decode()
    assert lines[2] == "index 3"
    assert parse_tlog_proof(text) == proof
    verifiers = [log_signer.verifier(), witness_signer.verifier()]
    checkpoint = verify_tlog_proof(text, verifiers, leaf_data=ENTRIES[3], origin=ORIGIN)
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 7)
    assert verify_tlog_proof(text, verifiers, leaf_hash=leaf_hash(ENTRIES[3])) == checkpoint


def test_tlog_proof_without_hashes(log_signer: Signer) -> None:
    single = MemoryNodeStore([leaf_hash(b"only")])
    text = Checkpoint(ORIGIN, 1, single.node(0, 0)).to_text()
    proof_text = TlogProof(0, (), log_signer.sign(text)).to_text()
    assert proof_text.startswith(f"{TLOG_PROOF_HEADER}\nindex 0\n\n{ORIGIN}\n")
    checkpoint = verify_tlog_proof(proof_text, [log_signer.verifier()], leaf_data=b"only")
    assert checkpoint.size == 1


@pytest.mark.parametrize(
    ("leaf_data", "leaf_hash_value"), [(None, None), (b"entry 3", leaf_hash(b"entry 3"))]
)
def test_tlog_proof_needs_exactly_one_leaf(
    store: MemoryNodeStore,
    log_signer: Signer,
    leaf_data: bytes | None,
    leaf_hash_value: bytes | None,
) -> None:
    text = _proof_text(store, _checkpoint_note(store, log_signer))
    with pytest.raises(InvalidInputError, match="exactly one"):
        verify_tlog_proof(
            text, [log_signer.verifier()], leaf_data=leaf_data, leaf_hash=leaf_hash_value
        )


HASH_B64 = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("head", "match"),
    [
        ("c2sp.org/tlog-proof@v2\nindex 3", "must start with"),
        (f"{TLOG_PROOF_HEADER}", "no 'index' line"),
        (f"{TLOG_PROOF_HEADER}\nextra AAAA", "no 'index' line"),
        (f"{TLOG_PROOF_HEADER}\nindex 03", "decimal"),
        (f"{TLOG_PROOF_HEADER}\nindex -3", "decimal"),
        (f"{TLOG_PROOF_HEADER}\nindex three", "decimal"),
        (f"{TLOG_PROOF_HEADER}\nextra !!!\nindex 3", "extra data is not valid base64"),
        (f"{TLOG_PROOF_HEADER}\nindex 3\nnot-base64", "proof hash 0"),
        (f"{TLOG_PROOF_HEADER}\nindex 3\n{HASH_B64}\nAAAA", "32 bytes"),
        (f"{TLOG_PROOF_HEADER}\nindex 3\nextra AAAA", "proof hash 0"),
    ],
)
def test_malformed_tlog_proofs_are_rejected(head: str, match: str) -> None:
    with pytest.raises(VerificationError, match=match):
        parse_tlog_proof(f"{head}\n\nexample.com/log\n1\n{HASH_B64}\n\n— sig AAAA\n")


@pytest.mark.parametrize(
    "text",
    [
        f"{TLOG_PROOF_HEADER}\nindex 3\n",
        f"{TLOG_PROOF_HEADER}\nindex 3\n\n",
        f"{TLOG_PROOF_HEADER}\nindex 3\n\nno final newline",
    ],
)
def test_tlog_proof_needs_a_checkpoint(text: str) -> None:
    with pytest.raises(VerificationError):
        parse_tlog_proof(text)


def test_tlog_proof_rejects_untrusted_checkpoint(
    store: MemoryNodeStore, log_signer: Signer, witness_signer: Signer
) -> None:
    text = _proof_text(store, _checkpoint_note(store, log_signer))
    with pytest.raises(VerificationError, match="no signature from a trusted key"):
        verify_tlog_proof(text, [witness_signer.verifier()], leaf_data=ENTRIES[3])


def test_tlog_proof_rejects_tampered_checkpoint(store: MemoryNodeStore, log_signer: Signer) -> None:
    note_text = _checkpoint_note(store, log_signer).replace("\n7\n", "\n6\n", 1)
    text = _proof_text(store, note_text)
    with pytest.raises(VerificationError, match="invalid signature"):
        verify_tlog_proof(text, [log_signer.verifier()], leaf_data=ENTRIES[3])


def test_tlog_proof_rejects_malformed_signed_checkpoint(
    store: MemoryNodeStore, log_signer: Signer
) -> None:
    text = _proof_text(store, log_signer.sign(f"{ORIGIN}\nseven\n{HASH_B64}\n"))
    with pytest.raises(VerificationError, match="decimal"):
        verify_tlog_proof(text, [log_signer.verifier()], leaf_data=ENTRIES[3])


def test_tlog_proof_rejects_another_origin(store: MemoryNodeStore, log_signer: Signer) -> None:
    text = _proof_text(store, _checkpoint_note(store, log_signer))
    with pytest.raises(VerificationError, match=r"not 'example\.org/other'"):
        verify_tlog_proof(
            text, [log_signer.verifier()], leaf_data=ENTRIES[3], origin="example.org/other"
        )


def test_tlog_proof_needs_the_logs_own_signature(
    store: MemoryNodeStore, log_signer: Signer, witness_signer: Signer
) -> None:
    # Signed by the log and a witness, but only the witness is trusted.
    text = _proof_text(store, _checkpoint_note(store, log_signer, witness_signer))
    with pytest.raises(VerificationError, match="no verified signature by the log"):
        verify_tlog_proof(text, [witness_signer.verifier()], leaf_data=ENTRIES[3])
    # ... unless the caller names the witness as the key that stands for the log.
    checkpoint = verify_tlog_proof(
        text,
        [witness_signer.verifier()],
        leaf_data=ENTRIES[3],
        log_key_name=witness_signer.name,
    )
    assert checkpoint.size == 7


@pytest.mark.parametrize("tampering", ["leaf", "index", "hash", "extra-hash", "short"])
def test_tlog_proof_rejects_wrong_inclusion(
    store: MemoryNodeStore, log_signer: Signer, tampering: str
) -> None:
    note_text = _checkpoint_note(store, log_signer)
    hashes = list(inclusion_proof_from_nodes(3, 7, store))
    index, entry = 3, ENTRIES[3]
    if tampering == "leaf":
        entry = b"entry 99"
    elif tampering == "index":
        index = 2
    elif tampering == "hash":
        hashes[1] = bytes(32)
    elif tampering == "extra-hash":
        hashes.append(bytes(32))
    else:
        hashes.pop()
    text = TlogProof(index, tuple(hashes), note_text).to_text()
    with pytest.raises(VerificationError):
        verify_tlog_proof(text, [log_signer.verifier()], leaf_data=entry)


def test_tlog_proof_constructor_checks() -> None:
    with pytest.raises(InvalidInputError):
        TlogProof(-1, (), "note\n")
    with pytest.raises(InvalidInputError):
        TlogProof(0, (b"short",), "note\n")
    with pytest.raises(InvalidInputError):
        TlogProof(0, (), "note without newline")
