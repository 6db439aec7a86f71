"""C2SP signed notes, checkpoints and tlog proofs with Ed25519 (pure apart from the crypto).

Specifications followed:

* signed note, https://c2sp.org/signed-note — text ending in a newline, a blank line, then
  signature lines ``— <key name> base64(key ID || signature)``; the key ID is
  ``SHA-256(key name || 0x0A || 0x01 || public key)[:4]`` for Ed25519 (type ``0x01``);
  signatures from unknown keys are ignored, a bad signature from a known key rejects the note,
  and a note with no verified signature is rejected.
* checkpoint, https://c2sp.org/tlog-checkpoint — note text of origin, tree size (decimal, no
  leading zeroes), base64 root hash, then optional non-empty extension lines.
* tlog proof, https://c2sp.org/tlog-proof — ``c2sp.org/tlog-proof@v1``, an optional
  ``extra <base64>`` line, ``index <n>``, the base64 inclusion proof hashes one per line, a
  blank line, then the signed checkpoint verbatim.

Key strings use the format of Go's ``golang.org/x/mod/sumdb/note``: verifier keys
``<name>+<hex key ID>+<base64(0x01 || public key)>`` and signer keys
``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

Errors: malformed keys and arguments given by the caller raise
:class:`~consentry.errors.InvalidInputError`; anything wrong with a note, checkpoint or proof
being verified (it is evidence, possibly forged) raises
:class:`~consentry.errors.VerificationError` on the first failed check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consentry.errors import ConsentryError, InvalidInputError, VerificationError
from consentry.ledger import merkle

__all__ = [
    "MAX_SIGNATURES",
    "SIGNATURE_TYPE_ED25519",
    "TLOG_PROOF_HEADER",
    "Checkpoint",
    "Signer",
    "TlogProof",
    "Verifier",
    "generate_signer",
    "key_id",
    "open_note",
    "parse_signer_key",
    "parse_tlog_proof",
    "parse_verifier_key",
    "sign_note",
    "verify_tlog_proof",
]

SIGNATURE_TYPE_ED25519 = 0x01
"""Signature type byte of Ed25519 in the signed-note registry."""

MAX_SIGNATURES = 100
"""Signature lines accepted per note; the spec asks for at least 16 and a limit against abuse."""

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"

_SIGNATURE_PREFIX = "\N{EM DASH} "
_PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
_ED25519_SIGNATURE_SIZE = 64
_ED25519_KEY_SIZE = 32
# Every ASCII control character except newline (signed-note "Format").
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")


# --- keys ---------------------------------------------------------------------------------


def key_id(name: str, public_key: bytes) -> int:
    """Ed25519 key ID: ``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` as a big-endian int."""
    digest = hashlib.sha256(
        name.encode() + b"\n" + bytes([SIGNATURE_TYPE_ED25519]) + public_key
    ).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True, slots=True)
class Verifier:
    """A trusted Ed25519 public key (32 raw bytes) with its note key name."""

    name: str
    public_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if len(self.public_key) != _ED25519_KEY_SIZE:
            raise InvalidInputError(f"Ed25519 public key for {self.name} must be 32 bytes")

    @property
    def key_id(self) -> int:
        """The key ID that signature lines by this key carry."""
        return key_id(self.name, self.public_key)

    def to_vkey(self) -> str:
        """The verifier key string ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        encoded = _b64encode(bytes([SIGNATURE_TYPE_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True, eq=False)
class Signer:
    """An Ed25519 private key with its note key name (compared by identity, never printed)."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)

    @property
    def key_id(self) -> int:
        """The key ID that signature lines by this key carry."""
        return self.verifier().key_id

    def to_skey(self) -> str:
        """The signer key string ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``."""
        seed = self.private_key.private_bytes_raw()
        encoded = _b64encode(bytes([SIGNATURE_TYPE_ED25519]) + seed)
        return f"{_PRIVATE_KEY_PREFIX}{self.name}+{self.key_id:08x}+{encoded}"

    def verifier(self) -> Verifier:
        """The matching public :class:`Verifier`."""
        return Verifier(self.name, self.private_key.public_key().public_bytes_raw())

    def sign(self, text: str) -> str:
        """Sign ``text`` as this key: see :func:`sign_note`."""
        return sign_note(text, self.name, self.private_key)


def generate_signer(name: str) -> tuple[str, str]:
    """A new Ed25519 key pair for ``name`` as ``(signer key, verifier key)`` strings."""
    signer = Signer(name, Ed25519PrivateKey.generate())
    return signer.to_skey(), signer.verifier().to_vkey()


def parse_verifier_key(vkey: str) -> Verifier:
    """Parse ``<name>+<hex key ID>+<base64(0x01 || public key)>``; InvalidInputError if bad."""
    # The base64 part may itself contain "+", so split only twice.
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise InvalidInputError("verifier key must look like <name>+<key id>+<base64 key>")
    name, id_hex, encoded = parts
    key = _decode_key("verifier key", name, id_hex, encoded)
    _check_key_id("verifier key", name, id_hex, key)
    return Verifier(name, key)


def parse_signer_key(skey: str) -> Signer:
    """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``; InvalidInputError."""
    if not skey.startswith(_PRIVATE_KEY_PREFIX):
        raise InvalidInputError(f"signer key must start with {_PRIVATE_KEY_PREFIX}")
    parts = skey[len(_PRIVATE_KEY_PREFIX) :].split("+", 2)
    if len(parts) != 3:
        raise InvalidInputError(
            "signer key must look like PRIVATE+KEY+<name>+<key id>+<base64 key>"
        )
    name, id_hex, encoded = parts
    seed = _decode_key("signer key", name, id_hex, encoded)
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    _check_key_id("signer key", name, id_hex, private_key.public_key().public_bytes_raw())
    return Signer(name, private_key)


def _decode_key(what: str, name: str, id_hex: str, encoded: str) -> bytes:
    """Check name and key ID syntax; return the 32 key bytes after the type byte."""
    _check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise InvalidInputError(f"{what} ID must be 8 hex digits, got {id_hex!r}")
    try:
        raw = _b64decode(encoded)
    except ValueError:
        raise InvalidInputError(f"{what} for {name} is not valid base64") from None
    if len(raw) != 1 + _ED25519_KEY_SIZE or raw[0] != SIGNATURE_TYPE_ED25519:
        raise InvalidInputError(f"{what} for {name} is not an Ed25519 (type 0x01) key")
    return raw[1:]


def _check_key_id(what: str, name: str, id_hex: str, public_key: bytes) -> None:
    expected = key_id(name, public_key)
    if int(id_hex, 16) != expected:
        raise InvalidInputError(
            f"{what} for {name} has key ID {id_hex.lower()}, but its key gives {expected:08x}"
        )


def _check_key_name(name: str) -> None:
    if not _is_valid_key_name(name):
        raise InvalidInputError(
            f"key name {name!r} must be non-empty, without spaces, '+' or control characters"
        )


def _is_valid_key_name(name: str) -> bool:
    # str.isspace covers the Unicode spaces the spec forbids (and Go's unicode.IsSpace).
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() for c in name)
        and (_CONTROL.search(name) is None)
    )


# --- signed notes -------------------------------------------------------------------------


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign ``text`` (which must end in a newline) as ``name``; return the signed note.

    Raises InvalidInputError for an invalid key name or note text.
    """
    _check_key_name(name)
    if not text.endswith("\n"):
        raise InvalidInputError("note text must end with a newline")
    _check_note_characters(text, InvalidInputError)
    message = text.encode()
    public = private_key.public_key().public_bytes_raw()
    signature = key_id(name, public).to_bytes(4, "big") + private_key.sign(message)
    return f"{text}\n{_SIGNATURE_PREFIX}{name} {_b64encode(signature)}\n"


def open_note(note: str | bytes, verifiers: Iterable[Verifier | str]) -> tuple[str, list[str]]:
    """Verify a signed note; return its text and the names of the keys that verified.

    ``verifiers`` are trusted keys, as :class:`Verifier` objects or verifier key strings.
    Signatures from unknown keys (name and key ID not both known) are ignored, as the spec
    requires; a known key whose signature fails rejects the whole note. Raises
    VerificationError for a malformed note, a bad signature, or no verified signature, and
    InvalidInputError for a malformed or ambiguous trusted key.
    """
    known = _index_verifiers(verifiers)
    # 1. The note must be UTF-8 without control characters other than newline.
    text_of_note = _decode_note(note)
    _check_note_characters(text_of_note, VerificationError)
    # 2. The text ends at the last blank line; signature lines follow, each ending in newline.
    split = text_of_note.rfind("\n\n")
    if split < 0:
        raise VerificationError("note has no blank line before its signatures")
    text, signature_block = text_of_note[: split + 1], text_of_note[split + 2 :]
    if not signature_block.endswith("\n"):
        raise VerificationError("note must end with a signature line and a newline")
    lines = signature_block[:-1].split("\n")
    # 3. Bound the work an attacker can cause.
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError(f"note has {len(lines)} signatures, at most {MAX_SIGNATURES}")
    # 4. Every line must be well formed; known keys must verify; unknown keys are ignored.
    message = text.encode()
    verified: list[str] = []
    unknown: list[str] = []
    for line in lines:
        name, signer_id, signature = _parse_signature_line(line)
        verifier = known.get((name, signer_id))
        if verifier is None:
            unknown.append(f"{name}+{signer_id:08x}")
        elif not verifier.verify(message, signature):
            raise VerificationError(f"invalid signature from key {name}+{signer_id:08x}")
        elif name not in verified:
            verified.append(name)
    # 5. At least one signature must come from a known key.
    if not verified:
        seen = ", ".join(unknown)
        raise VerificationError(f"note has no signature from a trusted key (signed by {seen})")
    return text, verified


def _index_verifiers(verifiers: Iterable[Verifier | str]) -> dict[tuple[str, int], Verifier]:
    index: dict[tuple[str, int], Verifier] = {}
    for item in verifiers:
        verifier = parse_verifier_key(item) if isinstance(item, str) else item
        key = (verifier.name, verifier.key_id)
        previous = index.get(key)
        if previous is not None and previous != verifier:
            label = f"{verifier.name}+{verifier.key_id:08x}"
            raise InvalidInputError(f"two different trusted keys share name and ID {label}")
        index[key] = verifier
    return index


def _decode_note(note: str | bytes) -> str:
    if isinstance(note, str):
        try:
            note.encode()  # lone surrogates cannot be UTF-8
        except UnicodeEncodeError:
            raise VerificationError("note is not valid UTF-8") from None
        return note
    try:
        return note.decode()
    except UnicodeDecodeError:
        raise VerificationError("note is not valid UTF-8") from None


def _check_note_characters(text: str, error: type[ConsentryError]) -> None:
    found = _CONTROL.search(text)
    if found is not None:
        raise error(f"note contains control character {found.group()!r}")


def _parse_signature_line(line: str) -> tuple[str, int, bytes]:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise VerificationError(f"signature line must start with an em dash and space: {line!r}")
    name, sep, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    if not sep or not _is_valid_key_name(name):
        raise VerificationError(f"signature line has no valid key name: {line!r}")
    try:
        signature = _b64decode(encoded)
    except ValueError:
        raise VerificationError(f"signature from {name} is not valid base64") from None
    if len(signature) < 5:
        raise VerificationError(f"signature from {name} is too short")
    return name, int.from_bytes(signature[:4], "big"), signature[4:]


# --- checkpoints --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's signed tree head: origin, tree size, root hash, optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or _CONTROL.search(self.origin):
            raise InvalidInputError("checkpoint origin must be one non-empty line")
        if isinstance(self.size, bool) or self.size < 0:
            raise InvalidInputError(f"checkpoint size must be a count, got {self.size!r}")
        if len(self.root_hash) != merkle.HASH_SIZE:
            raise InvalidInputError(
                f"checkpoint root hash is {len(self.root_hash)} bytes, expected {merkle.HASH_SIZE}"
            )
        for line in self.extensions:
            if not line or "\n" in line or _CONTROL.search(line):
                raise InvalidInputError("checkpoint extension lines must be non-empty lines")

    def to_text(self) -> str:
        """The note text: origin, size, base64 root and extension lines, each with newline."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text (without signatures); VerificationError if malformed."""
        if not text.endswith("\n"):
            raise VerificationError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise VerificationError(
                f"checkpoint has {len(lines)} lines, needs origin, size and root hash"
            )
        origin, size, root, *extensions = lines
        if not _DECIMAL.fullmatch(size):
            raise VerificationError(f"checkpoint size {size!r} is not a decimal without zeroes")
        try:
            root_hash = _b64decode(root)
        except ValueError:
            raise VerificationError(f"checkpoint root hash {root!r} is not valid base64") from None
        try:
            return cls(origin, int(size), root_hash, tuple(extensions))
        except InvalidInputError as error:
            raise VerificationError(str(error)) from None


# --- tlog proofs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlogProof:
    """A ``c2sp.org/tlog-proof@v1``: index, inclusion proof, signed checkpoint, extra data."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or self.index < 0:
            raise InvalidInputError(f"tlog proof index must be a count, got {self.index!r}")
        for hash_ in self.hashes:
            if len(hash_) != merkle.HASH_SIZE:
                raise InvalidInputError(f"proof hashes must be {merkle.HASH_SIZE} bytes")
        if not self.checkpoint_note.endswith("\n"):
            raise InvalidInputError("the checkpoint note must end with a newline")

    def to_text(self) -> str:
        """The proof in its text form (https://c2sp.org/tlog-proof)."""
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {_b64encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(_b64encode(hash_) for hash_ in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint_note


def parse_tlog_proof(text: str) -> TlogProof:
    """Parse a ``c2sp.org/tlog-proof@v1``; VerificationError if malformed.

    Only the syntax is checked: :func:`verify_tlog_proof` checks what it proves.
    """
    # Header, extra, index and hash lines are all non-empty: the first blank line ends them.
    head, sep, checkpoint_note = text.partition("\n\n")
    if not sep or not checkpoint_note:
        raise VerificationError("tlog proof has no blank line followed by a checkpoint")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise VerificationError(f"tlog proof must start with {TLOG_PROOF_HEADER}")
    position = 1
    extra = None
    if position < len(lines) and lines[position].startswith("extra "):
        extra = _decode_proof_field("extra data", lines[position][len("extra ") :])
        position += 1
    if position >= len(lines) or not lines[position].startswith("index "):
        raise VerificationError("tlog proof has no 'index' line")
    index = lines[position][len("index ") :]
    if not _DECIMAL.fullmatch(index):
        raise VerificationError(f"tlog proof index {index!r} is not a decimal without zeroes")
    hashes = tuple(
        _decode_proof_field(f"proof hash {number}", line)
        for number, line in enumerate(lines[position + 1 :])
    )
    try:
        return TlogProof(int(index), hashes, checkpoint_note, extra)
    except InvalidInputError as error:
        raise VerificationError(str(error)) from None


def _decode_proof_field(what: str, encoded: str) -> bytes:
    try:
        return _b64decode(encoded)
    except ValueError:
        raise VerificationError(f"tlog proof {what} is not valid base64") from None


def verify_tlog_proof(
    proof_text: str,
    verifiers: Iterable[Verifier | str],
    *,
    leaf_data: bytes | None = None,
    leaf_hash: bytes | None = None,
    origin: str | None = None,
    log_key_name: str | None = None,
) -> Checkpoint:
    """Verify that an entry is in a log, offline, from a tlog proof; return its checkpoint.

    Give the entry as ``leaf_data`` (hashed as an RFC 9162 leaf) or as its ``leaf_hash``,
    not both. ``origin`` pins the expected log; the checkpoint must carry a verified
    signature by the log's own key, named ``log_key_name`` (default: the origin, as
    tlog-checkpoint recommends) — witness cosignatures alone do not stand for the log.
    Raises VerificationError on the first failed check.
    """
    # 1. The caller names the entry exactly one way; a 32-byte record must not pass as a hash.
    entry_hash = _entry_hash(leaf_data, leaf_hash)
    # 2. The proof text must be well formed.
    proof = parse_tlog_proof(proof_text)
    # 3. The checkpoint note must verify against the trusted keys.
    text, signers = open_note(proof.checkpoint_note, verifiers)
    # 4. Its text must be a well-formed checkpoint.
    checkpoint = Checkpoint.parse(text)
    # 5. It must come from the expected log.
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(f"checkpoint is from log {checkpoint.origin!r}, not {origin!r}")
    # 6. The log itself must have signed it.
    required = log_key_name if log_key_name is not None else checkpoint.origin
    if required not in signers:
        raise VerificationError(f"checkpoint carries no verified signature by the log {required}")
    # 7. The entry must be at the index in the checkpointed tree (RFC 9162 §2.1.3.2).
    merkle.verify_inclusion(
        proof.index, checkpoint.size, entry_hash, proof.hashes, checkpoint.root_hash
    )
    return checkpoint


def _entry_hash(leaf_data: bytes | None, leaf_hash: bytes | None) -> bytes:
    if leaf_data is not None and leaf_hash is None:
        return merkle.leaf_hash(leaf_data)
    if leaf_hash is not None and leaf_data is None:
        return leaf_hash
    raise InvalidInputError("give exactly one of leaf_data and leaf_hash")


# --- base64 -------------------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(encoded: str) -> bytes:
    """Strict standard base64 (RFC 4648 §4): padded, no stray characters, canonical.

    Raises ValueError. Re-encoding rejects non-zero padding bits, so each value has exactly
    one accepted spelling and a signed text cannot be varied without changing its bytes.
    """
    try:
        data = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError("not base64") from None
    if _b64encode(data) != encoded:
        raise ValueError("not canonical base64")
    return data
