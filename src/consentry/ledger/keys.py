"""The operator's Ed25519 key, kept in the registry home (never in the database).

``consentry init`` generates it once as ``<home>/keys/operator.key`` (the signer key string of
:mod:`consentry.ledger.note`, mode 0600, in a 0700 directory) and ``<home>/keys/operator.pub``
(the verifier key string, which anyone may hold). The key is named after the log's origin, as
C2SP tlog-checkpoint recommends, so a checkpoint's signature line names the log it speaks for.
This holds for PostgreSQL registries too: the database never sees the private key.

A key file that group or others can read is refused (ConfigurationError) instead of used: a
leaked operator key lets anyone sign checkpoints of a forged history.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from consentry.errors import ConfigurationError, InvalidInputError
from consentry.ledger.note import Signer, Verifier, generate_signer, parse_signer_key
from consentry.ledger.note import parse_verifier_key as _parse_vkey

__all__ = [
    "KEY_DIR",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "create_operator_key",
    "load_operator_signer",
    "operator_key_path",
    "operator_pub_path",
    "parse_vkey_argument",
    "read_operator_vkey",
]

KEY_DIR = "keys"
PRIVATE_KEY_FILE = "operator.key"
PUBLIC_KEY_FILE = "operator.pub"


def operator_key_path(home: Path) -> Path:
    """Where the operator's signer key lives in ``home``."""
    return home / KEY_DIR / PRIVATE_KEY_FILE


def operator_pub_path(home: Path) -> Path:
    """Where the operator's verifier key lives in ``home``."""
    return home / KEY_DIR / PUBLIC_KEY_FILE


def create_operator_key(home: Path, name: str) -> str:
    """Generate the operator key pair for log ``name`` in ``home``; return the verifier key.

    Refuses (ConfigurationError) to overwrite an existing key: replacing the operator key
    orphans every checkpoint and receipt issued so far.
    """
    key_path, pub_path = operator_key_path(home), operator_pub_path(home)
    if key_path.exists():
        raise ConfigurationError(f"an operator key already exists at {key_path}")
    try:
        skey, vkey = generate_signer(name)
    except InvalidInputError as exc:
        raise ConfigurationError(f"log origin {name!r} cannot name a key: {exc}") from None
    key_dir = key_path.parent
    key_dir.mkdir(parents=True, exist_ok=True)
    # mkdir honours the umask; set the mode explicitly so the directory is private.
    key_dir.chmod(0o700)
    # O_EXCL: never follow or reuse a file someone placed there; 0600 from the first byte.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(skey + "\n")
    pub_path.write_text(vkey + "\n", encoding="utf-8")
    pub_path.chmod(0o644)
    return vkey


def load_operator_signer(home: Path) -> Signer:
    """The operator's signer from ``home``; ConfigurationError if missing, exposed or bad."""
    key_path = operator_key_path(home)
    try:
        mode = key_path.stat().st_mode
    except FileNotFoundError:
        raise ConfigurationError(
            f"no operator key at {key_path}; run `consentry init` (or copy the operator's"
            " keys/ directory into this home)"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"operator key {key_path} is accessible to group or others (mode"
            f" {stat.S_IMODE(mode):04o}); refusing to use it — run `chmod 600 {key_path}`"
        )
    try:
        return parse_signer_key(key_path.read_text(encoding="utf-8").strip())
    except InvalidInputError as exc:
        raise ConfigurationError(f"operator key {key_path} is not a signer key: {exc}") from None


def read_operator_vkey(home: Path) -> str | None:
    """The operator's verifier key string from ``home``, or None if there is none."""
    pub_path = operator_pub_path(home)
    if not pub_path.exists():
        return None
    vkey = pub_path.read_text(encoding="utf-8").strip()
    try:
        _parse_vkey(vkey)
    except InvalidInputError as exc:
        raise ConfigurationError(f"{pub_path} is not a verifier key: {exc}") from None
    return vkey


def parse_vkey_argument(value: str) -> Verifier:
    """A verifier key given on the command line: the key string itself or a file holding it."""
    text = value.strip()
    if "+" not in text or Path(text).is_file():
        path = Path(text)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidInputError(
                f"--vkey {value!r} is neither a verifier key nor a readable file ({exc.strerror})"
            ) from None
    return _parse_vkey(text)
