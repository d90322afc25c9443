"""What keeps patient identifiers out of everything a build publishes.

- **Pseudonymous ids.** Folder and file names of hospital exports often hold
  names and record numbers (``Doe^John_MRN55555/IMG0001.dcm``). A file's key is a
  keyed hash (HMAC-SHA256) of its source and path, with a secret that never
  leaves the machine: kept in the user's configuration folder
  (``$MEDTRI_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/medtrinity-25m``, else
  ``~/.config/medtrinity-25m``; file ``id-key``, mode 0600, made on first use), or
  given with ``--id-key`` / ``$MEDTRI_ID_KEY``. The same manifest on the same
  machine gives the same ids, whatever the output folder or the workers; nobody
  without the key can test a guessed name against an id.
- **Redaction.** Credentials in URLs, bearer tokens, Hub and OpenAI-style keys and
  the values of secret-looking environment variables are removed from any text
  before it is printed or written (:func:`redact`); input path components and
  absolute paths are removed from published reject reasons (:func:`scrub`).
- **Commands.** Local commands named in a manifest run with an environment
  stripped of tokens and keys (:func:`command_env`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Iterable, Mapping

__all__ = ["IdKey", "command_env", "config_dir", "load_id_key", "redact", "scrub", "secret_values"]

KEY_FILE = "id-key"
#: Environment variables whose values are secrets (by name).
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH|PRIVATE|_KEY$|^HF_|SESSION",
                         re.IGNORECASE)
#: Variables a command keeps even though they match nothing secret: the rest of the environment goes too.
COMMAND_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "USER", "LOGNAME", "SHELL",
               "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
               "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "SYSTEMROOT")
_TOKENS = [
    # a credential after the scheme's name; a capitalised word is prose ("Basic Application Confidentiality Profile")
    (re.compile(r"\b((?i:bearer|basic|token))\s+(?![A-Z][a-z]+\b)[A-Za-z0-9._~+/=-]{6,}"), r"\1 [redacted]"),
    (re.compile(r"(?i)(authorization|api[-_]?key|x-api-key|password|secret)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
     r"\1\2[redacted]"),
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}"), "[redacted]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "[redacted]"),
    (re.compile(r"\b(?:ghp|gho|ghs|github_pat|xox[abp])_[A-Za-z0-9_]{8,}"), "[redacted]"),
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s@:]*(?::[^/\s@]*)?@"), r"\1[redacted]@"),
]
_ABSOLUTE = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\\/](?:[^\s'\"\\/:,;)\]]+[\\/])*[^\s'\":,;)\]]+")


def config_dir() -> Path:
    """Where the id key lives: never inside an output folder."""
    if os.environ.get("MEDTRI_CONFIG_DIR"):
        return Path(os.environ["MEDTRI_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "medtrinity-25m"


class IdKey:
    """The secret of the keyed hashes; ``fingerprint`` tells keys apart without revealing them."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def file_key(self, *parts: str) -> str:
        """20 hex digits of HMAC-SHA256 over ``parts``."""
        return hmac.new(self._secret, "\0".join(parts).encode(), hashlib.sha256).hexdigest()[:20]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(b"medtrinity-25m id key\0" + self._secret).hexdigest()[:12]

    def __repr__(self) -> str:  # never show the secret
        return f"IdKey({self.fingerprint})"

    def __reduce__(self) -> tuple:
        raise TypeError("the id key stays in the main process")


def load_id_key(given: str | None = None) -> IdKey:
    """The key from ``given`` (--id-key), ``$MEDTRI_ID_KEY``, or the user's key file (made once)."""
    text = given or os.environ.get("MEDTRI_ID_KEY")
    if text:
        return IdKey(text.encode())
    path = config_dir() / KEY_FILE
    if not path.is_file():
        _new_key_file(path)
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable id key (it is empty or cut short); restore it from a backup to keep "
                         "the same ids, or remove it to make a new key (every id then changes)")
    return IdKey(key.encode())


def _new_key_file(path: Path) -> None:
    """Write a new key whole, or not at all: written beside it, then linked in place (a second process making a key
    at the same moment keeps the first one's)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staged = path.with_name(f".{KEY_FILE}.{os.getpid()}")
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(staged, path)
    except FileExistsError:
        pass
    finally:
        staged.unlink()


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of this environment's secret-looking variables (long enough to matter)."""
    environ = os.environ if environ is None else environ
    return sorted({v for k, v in environ.items() if SECRET_NAME.search(k) and len(v) >= 6}, key=len, reverse=True)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` without credentials: URL user info, tokens, keys, secret variables' values."""
    for value in [*secret_values(), *extra]:
        if value:
            text = text.replace(value, "[redacted]")
    for pattern, replacement in _TOKENS:
        text = pattern.sub(replacement, text)
    return text


def _parts(name: str) -> set[str]:
    path = Path(name)
    parts = {name, path.name, path.as_posix(), path.stem, path.name.split(".")[0]}
    return parts | {p for p in path.parts if p not in ("/", ".", "..")}


def scrub(text: str, names: Iterable[str], public: str = "") -> str:
    """Published text: every given input name (and each component of a path) and any absolute path removed.

    The components of ``public`` (the input's published name, a public release's own path) stay.
    """
    parts: set[str] = set()
    for name in names:
        if name:
            parts |= _parts(name)
    parts -= _parts(public) if public else set()
    text = _ABSOLUTE.sub("<path>", text)
    for part in sorted((p for p in parts if len(p) >= 3), key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(part)}(?![A-Za-z0-9])", "<input>", text)
    return redact(text)


def command_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a manifest's command runs with: the plain variables, no token or key."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k in COMMAND_ENV and not SECRET_NAME.search(k)}
