"""Keys in a PKCS#11 token (an HSM, a cloud HSM, SoftHSM2 in tests): ``CALLVAULT_KEYS_BACKEND=
pkcs11``. The master, hash and signing keys are non-extractable objects of the token, found by
their labels; callvault asks the token to use them and never sees them:

* a recording's data key is sealed and opened with AES-256-GCM *inside the token* under the
  master key object (``CKM_AES_GCM``, the recording id as associated data - the same bytes as a
  master key in this process makes, so a key imported into a token goes on opening them);
* identifier digests are HMAC-SHA256 inside the token (``CKM_SHA256_HMAC``), a batch of
  messages in one session;
* certificates and audit checkpoints are signed inside the token: Ed25519 (``CKM_EDDSA``) or,
  where the token has no EdDSA, ECDSA P-256 (``ES256``); the algorithm is in the signature.

Sessions come from a pool sized for the process's concurrency. The library is initialised for
multi-threaded use (``CKF_OS_LOCKING_OK``); each session serves one thread at a time. A token
that does not answer is a :class:`TransientError` (the session is dropped and a retry opens
another); a wrong PIN, a missing token or a missing object is a :class:`ConfigError` naming the
setting."""

from __future__ import annotations

import ctypes
import hashlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import _pkcs11 as native
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_named_curve_parameters

from ..domain.errors import ConfigError, IntegrityError, TransientError
from ..domain.keyed import HmacKey
from ..settings import Settings
from .keys import (
    HashKey,
    KeyRing,
    MasterKey,
    SoftwareSigner,
    check_value,
    software_master,
)
from .signatures import ED25519, ES256

T = TypeVar("T")
ED25519_CURVE = "1.3.101.112"
P256_CURVE = "1.2.840.10045.3.1.7"
CKF_OS_LOCKING_OK = 0x2
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
# the token may come back: drop the session and try again
UNREACHABLE = (
    p11.DeviceError,
    p11.DeviceMemory,
    p11.DeviceRemoved,
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.SessionCount,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.FunctionFailed,
    p11.UserNotLoggedIn,
)
PIN_REFUSED = (
    p11.PinIncorrect,
    p11.PinInvalid,
    p11.PinLenRange,
    p11.PinLocked,
    p11.PinExpired,
)
# what a failed authentication of GCM ciphertext looks like (SoftHSM2 says GeneralError)
NOT_AUTHENTIC = (
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.GeneralError,
    p11.DataInvalid,
)
# non-extractable, sensitive, usable only for what it is for, never changed
_GUARDED = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.DERIVE: False,
}
PRIVATE_TEMPLATE = {**_GUARDED, Attribute.SIGN: True}
SECRET_TEMPLATE = {**_GUARDED, Attribute.WRAP: False, Attribute.UNWRAP: False}
MASTER_TEMPLATE = {
    **SECRET_TEMPLATE,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
}
HASH_TEMPLATE = {
    **SECRET_TEMPLATE,
    Attribute.SIGN: True,
    Attribute.VERIFY: False,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
}
PUBLIC_TEMPLATE = {Attribute.TOKEN: True, Attribute.VERIFY: True, Attribute.MODIFIABLE: False}


class _InitArgs(ctypes.Structure):
    _fields_ = [
        ("create_mutex", ctypes.c_void_p),
        ("destroy_mutex", ctypes.c_void_p),
        ("lock_mutex", ctypes.c_void_p),
        ("unlock_mutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("reserved", ctypes.c_void_p),
    ]


_INITIALIZE = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)


class _FunctionList(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte), ("initialize", _INITIALIZE)]


class _ThreadedLib(native.lib):
    """python-pkcs11 initialises a library with no arguments, which tells it that no two
    threads will call it at once (SoftHSM2 then takes no locks). Initialise it ourselves with
    ``CKF_OS_LOCKING_OK`` instead, through its function list."""

    def initialize(self) -> None:
        library = ctypes.CDLL(self.so)
        function_list = ctypes.POINTER(_FunctionList)()
        get = library.C_GetFunctionList
        get.argtypes = [ctypes.POINTER(ctypes.POINTER(_FunctionList))]
        get.restype = ctypes.c_ulong
        if get(ctypes.byref(function_list)) != 0:
            raise p11.GeneralError("C_GetFunctionList failed")
        args = _InitArgs(None, None, None, None, CKF_OS_LOCKING_OK, None)
        result = function_list.contents.initialize(ctypes.addressof(args))
        if result not in (0, CKR_CRYPTOKI_ALREADY_INITIALIZED):
            raise p11.DeviceError(f"C_Initialize returned {result:#x}")


_libraries: dict[str, Any] = {}
_libraries_lock = threading.Lock()


def _library(module: Path) -> Any:
    path = str(module)
    with _libraries_lock:
        if path not in _libraries:
            if not module.is_file():
                raise ConfigError(
                    f"invalid settings - CALLVAULT_PKCS11_MODULE: no file {path} (the token's "
                    "PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so)"
                )
            try:
                _libraries[path] = _ThreadedLib(path)
            except (p11.PKCS11Error, OSError, AttributeError) as exc:
                raise ConfigError(
                    f"invalid settings - CALLVAULT_PKCS11_MODULE: {path} is not a PKCS#11 "
                    f"library it can load ({type(exc).__name__})"
                ) from None
        return _libraries[path]


@dataclass
class _Session:
    """A session of the pool and the key objects found in it (handles are per session)."""

    session: Any
    keys: dict[tuple[str, int], Any] = field(default_factory=dict)

    def key(self, label: str, object_class: ObjectClass = ObjectClass.SECRET_KEY) -> Any:
        found = self.keys.get((label, object_class))
        if found is None:
            found = self.session.get_key(label=label, object_class=object_class)
            self.keys[(label, object_class)] = found
        return found


class Token:
    """One PKCS#11 token, logged in once, and a pool of its sessions."""

    def __init__(
        self, module: Path, label: str, pin: str, sessions: int, serial: str | None = None
    ) -> None:
        self.module, self.label, self._pin, self.serial = module, label, pin, serial
        self._size = max(1, sessions)
        self._idle: queue.LifoQueue[_Session] = queue.LifoQueue()
        self._open = 0
        self._lock = threading.Lock()
        self._token: Any = None
        self._anchor: Any = None  # the session that logged in; kept open, so the login lasts

    def __repr__(self) -> str:
        return f"Token({self.label!r} via {self.module})"

    @contextmanager
    def session(self) -> Iterator[_Session]:
        """A session for one operation (or one batch); a token that does not answer drops it
        and raises :class:`TransientError`."""
        lent = self._borrow()
        try:
            yield lent
        except UNREACHABLE as exc:
            # a token that forgot the login (restarted) is logged in again on the next session
            self._drop(lent, logged_out=isinstance(exc, p11.UserNotLoggedIn))
            raise self._unreachable(exc) from exc
        except p11.NoSuchKey as exc:
            self._idle.put(lent)
            raise ConfigError(f"the token {self.label!r} has no key {exc}") from None
        except BaseException:
            self._idle.put(lent)
            raise
        self._idle.put(lent)

    def _unreachable(self, exc: Exception) -> TransientError:
        return TransientError(f"the PKCS#11 token {self.label!r} did not answer ({exc!r})")

    def run(self, operation: Callable[[_Session], T]) -> T:
        with self.session() as lent:
            return operation(lent)

    @contextmanager
    def admin(self) -> Iterator[Any]:
        """A read-write session, for creating keys."""
        self._login()
        try:
            session = self._token.open(rw=True)
        except UNREACHABLE as exc:
            raise self._unreachable(exc) from exc
        try:
            yield session
        finally:
            session.close()

    def mechanisms(self) -> set[Mechanism]:
        self._login()
        return set(self._token.slot.get_mechanisms())

    def _borrow(self) -> _Session:
        """An idle session, else a new one while the pool has room, else the next returned
        (a session dropped meanwhile makes room: the wait looks again every half second)."""
        wait = 0.0
        while True:
            try:
                return self._idle.get(timeout=wait) if wait else self._idle.get_nowait()
            except queue.Empty:
                wait = 0.5
            with self._lock:
                grow = self._open < self._size
                if grow:
                    self._open += 1
            if grow:
                return self._new_session()

    def _new_session(self) -> _Session:
        try:
            self._login()
            return _Session(self._token.open())
        except UNREACHABLE as exc:
            with self._lock:
                self._open -= 1
            raise self._unreachable(exc) from exc
        except BaseException:
            with self._lock:
                self._open -= 1
            raise

    def _drop(self, lent: _Session, *, logged_out: bool) -> None:
        with suppress(p11.PKCS11Error):  # the token is away: the session is gone anyway
            lent.session.close()
        with self._lock:
            self._open -= 1
            anchor = self._anchor if logged_out else None
            if logged_out:
                self._anchor = None
        if anchor is not None:
            with suppress(p11.PKCS11Error):
                anchor.close()

    def _login(self) -> None:
        with self._lock:
            if self._anchor is not None:
                return
            if self._token is None:
                self._token = self._find()
            try:
                self._anchor = self._token.open(user_pin=self._pin)
            except PIN_REFUSED as exc:
                raise ConfigError(
                    f"invalid settings - CALLVAULT_PKCS11_PIN_FILE: the token {self.label!r} "
                    f"refused the PIN ({type(exc).__name__})"
                ) from None
            except p11.UserAlreadyLoggedIn:
                self._anchor = self._token.open()
            except UNREACHABLE as exc:
                raise self._unreachable(exc) from exc

    def _find(self) -> Any:
        """The token labelled so (and of that serial number, when one is given: tokens cloned
        for high availability share a label); a slot whose token does not answer is passed
        over."""
        found = []
        for slot in _library(self.module).get_slots(token_present=True):
            try:
                token = slot.get_token()
            except p11.PKCS11Error:
                continue
            serial = bytes(token.serial).decode(errors="replace").strip()
            if token.label == self.label and self.serial in (None, serial):
                found.append(token)
        if not found:
            serial = "" if self.serial is None else f" with serial {self.serial!r}"
            raise ConfigError(
                f"invalid settings - CALLVAULT_PKCS11_TOKEN_LABEL: no token labelled "
                f"{self.label!r}{serial} in {self.module}"
            )
        if len(found) > 1:
            raise ConfigError(
                f"invalid settings - CALLVAULT_PKCS11_TOKEN_LABEL: several tokens are labelled "
                f"{self.label!r} (CALLVAULT_PKCS11_TOKEN_SERIAL chooses one)"
            )
        return found[0]


@dataclass(frozen=True)
class TokenAead:
    """AES-256-GCM under a key object of the token."""

    token: Token
    label: str

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        params = GCMParams(nonce, associated_data)
        return bytes(
            self.token.run(
                lambda s: s.key(self.label).encrypt(
                    data, mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
            )
        )

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        params = GCMParams(nonce, associated_data)

        def decrypt(lent: _Session) -> bytes:
            try:
                return bytes(
                    lent.key(self.label).decrypt(
                        data, mechanism=Mechanism.AES_GCM, mechanism_param=params
                    )
                )
            except NOT_AUTHENTIC as exc:
                raise IntegrityError(
                    f"the ciphertext does not authenticate under {self.label}"
                ) from exc

        return self.token.run(decrypt)

    def check_value(self) -> str:
        """The token's key check value (``CKA_CHECK_VALUE``: AES-ECB of a zero block, three
        bytes), which any holder of the same key can compute too."""

        def read(lent: _Session) -> bytes:
            return bytes(lent.key(self.label)[Attribute.CHECK_VALUE])

        try:
            return "kcv:" + self.token.run(read).hex()
        except p11.AttributeTypeInvalid:
            raise ConfigError(
                f"the token {self.token.label!r} gives no check value for {self.label!r} "
                "(CKA_CHECK_VALUE, PKCS#11 2.40)"
            ) from None


@dataclass(frozen=True)
class TokenMac:
    """HMAC-SHA256 under a key object of the token; a batch in one session."""

    token: Token
    label: str

    def macs(self, messages: Sequence[bytes]) -> list[bytes]:
        if not messages:
            return []

        def sign(lent: _Session) -> list[bytes]:
            key = lent.key(self.label)
            return [bytes(key.sign(m, mechanism=Mechanism.SHA256_HMAC)) for m in messages]

        return self.token.run(sign)


class TokenSigner:
    """A signing key pair of the token: Ed25519 where the key is an Edwards key, else ES256."""

    def __init__(self, token: Token, label: str, key_id: str) -> None:
        self.token, self.label, self.key_id = token, label, key_id
        self.where = f"token {token.label!r}, object {label!r}"
        key_type, point = token.run(self._describe)
        self.algorithm = ED25519 if key_type == KeyType.EC_EDWARDS else ES256
        self._public = _raw_point(point)

    def _describe(self, lent: _Session) -> tuple[KeyType, bytes]:
        private = lent.key(self.label, ObjectClass.PRIVATE_KEY)
        public = lent.key(self.label, ObjectClass.PUBLIC_KEY)
        return private[Attribute.KEY_TYPE], bytes(public[Attribute.EC_POINT])

    def sign(self, message: bytes) -> bytes:
        if self.algorithm == ED25519:
            mechanism, data = Mechanism.EDDSA, message
        else:
            mechanism, data = Mechanism.ECDSA, hashlib.sha256(message).digest()
        return bytes(
            self.token.run(
                lambda s: s.key(self.label, ObjectClass.PRIVATE_KEY).sign(data, mechanism=mechanism)
            )
        )

    def public_key(self) -> bytes:
        return self._public


def _raw_point(point: bytes) -> bytes:
    """``CKA_EC_POINT`` is a DER OCTET STRING around the point (some tokens give it bare)."""
    if len(point) in (34, 67) and point[0] == 0x04 and point[1] == len(point) - 2:
        return point[2:]
    return point


# --- the ring ---------------------------------------------------------------------------------


def token_of(settings: Settings) -> Token:
    settings.need("pkcs11_module", "pkcs11_token_label", "pkcs11_pin_file")
    assert settings.pkcs11_module is not None
    assert settings.pkcs11_token_label is not None
    assert settings.pkcs11_pin_file is not None
    try:
        pin = settings.pkcs11_pin_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"invalid settings - CALLVAULT_PKCS11_PIN_FILE: cannot read it ({exc.strerror})"
        ) from None
    sessions = settings.pkcs11_sessions or min(64, settings.concurrency * 3 + 4)
    return Token(
        settings.pkcs11_module,
        settings.pkcs11_token_label,
        pin,
        sessions,
        serial=settings.pkcs11_token_serial,
    )


def token_masters(token: Token, prefix: str) -> list[MasterKey]:
    """Every master key of the token: secret keys labelled ``prefix`` + id."""

    def labels(lent: _Session) -> list[str]:
        found = lent.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        return sorted(str(o.label) for o in found if str(o.label).startswith(prefix))

    masters = []
    for label in token.run(labels):
        aead = TokenAead(token, label)
        where = f"token {token.label!r}, object {label!r}"
        key_id = label.removeprefix(prefix)
        masters.append(MasterKey(key_id, aead, aead, aead.check_value(), where))
    return masters


def token_key_ring(settings: Settings, token: Token | None = None) -> KeyRing:
    """The keys of the token that ``settings`` name. A key given in settings besides (a master
    key in ``CALLVAULT_MASTER_KEYS``, ``CALLVAULT_HASH_KEY``, ``CALLVAULT_SIGNING_KEY``, retired
    hash keys) is used as well - only while keys move into or out of the token (docs/keys.md)."""
    token = token or token_of(settings)
    s = settings
    masters = {m.key_id: m for m in token_masters(token, s.pkcs11_master_label)}
    for key_id, key in s.software_master_keys().items():
        if key_id in masters:
            raise ConfigError(
                f"invalid settings - CALLVAULT_MASTER_KEYS: master key {key_id!r} is also "
                "in the token"
            )
        masters[key_id] = software_master(key_id, key)
    if s.master_key_id not in masters:
        raise ConfigError(
            f"invalid settings - CALLVAULT_MASTER_KEY_ID: the token {token.label!r} has no "
            f"master key {s.master_key_id!r} (object {s.pkcs11_master_label}{s.master_key_id}; "
            "`callvault keys generate` creates it)"
        )
    hash_key = (
        HashKey(HmacKey(s.key("hash_key")), "CALLVAULT_HASH_KEY")
        if s.hash_key is not None
        else _token_hash(token, s.pkcs11_hash_label, "CALLVAULT_PKCS11_HASH_LABEL")
    )
    retired = [
        _token_hash(token, label, "CALLVAULT_PKCS11_HASH_LABELS_RETIRED")
        for label in s.pkcs11_hash_labels_retired
    ]
    retired += [HashKey(HmacKey(k), "CALLVAULT_HASH_KEYS_RETIRED") for k in s.retired_hash_keys()]
    signer = (
        SoftwareSigner(s.signing_key_id, s.key("signing_key"))
        if s.signing_key is not None
        else _token_signer(token, s.pkcs11_signing_label, s.signing_key_id)
    )
    return KeyRing(
        masters=masters.values(),
        current_master=s.master_key_id,
        hash_key=hash_key,
        signer=signer,
        secret=lambda purpose: hash_key.mac.macs([purpose.encode()])[0],
        retired_hash_keys=retired,
        retired_signing_keys=s.retired_signing_keys(),
    )


def _token_hash(token: Token, label: str, setting: str) -> HashKey:
    mac = TokenMac(token, label)
    try:
        mac.macs([b"probe"])
    except ConfigError:
        raise ConfigError(
            f"invalid settings - {setting}: the token {token.label!r} has no hash key "
            f"{label!r} (`callvault keys generate` creates it)"
        ) from None
    return HashKey(mac, f"token {token.label!r}, object {label!r}")


def _token_signer(token: Token, label: str, key_id: str) -> TokenSigner:
    try:
        return TokenSigner(token, label, key_id)
    except ConfigError:
        raise ConfigError(
            f"invalid settings - CALLVAULT_PKCS11_SIGNING_LABEL: the token {token.label!r} has "
            f"no signing key {label!r} (`callvault keys generate` creates it)"
        ) from None


# --- generating keys in the token ---------------------------------------------------------------


def generate(settings: Settings, token: Token | None = None) -> list[str]:
    """Create what the settings name and the token lacks: the current master key, the hash key
    and the signing key pair, each non-extractable - but none whose role a key given in the
    settings plays (while keys move in or out). Returns what was created."""
    token = token or token_of(settings)
    s = settings
    wanted: dict[str, Callable[[Any, str, bool], str]] = {}
    if s.master_key_id not in s.software_master_keys():
        wanted[f"{s.pkcs11_master_label}{s.master_key_id}"] = _new_master
    if s.hash_key is None:
        wanted[s.pkcs11_hash_label] = _new_hash_key
    if s.signing_key is None:
        wanted[s.pkcs11_signing_label] = _new_signing_key
    created = []
    with token.admin() as session:
        present = {str(o.label) for o in session.get_objects({})}
        eddsa = Mechanism.EDDSA in token.mechanisms()
        for label, make in wanted.items():
            if label not in present:
                created.append(make(session, label, eddsa))
    return created


def import_hash_keys(settings: Settings, token: Token | None = None) -> list[tuple[str, str]]:
    """Copy the hash keys of the settings (``CALLVAULT_HASH_KEY`` and the retired ones) into
    the token as sensitive, non-extractable objects, so that no hash key need stay in the
    settings: the digests on record (tombstones included) stay valid without a rotation.
    Returns (label, what) of each key imported; a label the token has already is left."""
    token = token or token_of(settings)
    settings.need("hash_key")
    wanted = [(settings.pkcs11_hash_label, settings.key("hash_key"), "hash key")]
    wanted += [
        (f"{settings.pkcs11_hash_label}-retired-{check_value(key, 'hash')[:8]}", key, "retired")
        for key in settings.retired_hash_keys()
    ]
    done = []
    with token.admin() as session:
        present = {str(o.label) for o in session.get_objects({})}
        for label, key, what in wanted:
            if label in present:
                continue
            session.create_object(
                {
                    **HASH_TEMPLATE,
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                    Attribute.VALUE: key,
                    Attribute.LABEL: label,
                }
            )
            done.append((label, what))
    return done


def _new_master(session: Any, label: str, eddsa: bool) -> str:
    session.generate_key(KeyType.AES, 256, label=label, template=MASTER_TEMPLATE)
    return f"master key {label!r} (AES-256)"


def _new_hash_key(session: Any, label: str, eddsa: bool) -> str:
    session.generate_key(
        KeyType.GENERIC_SECRET,
        256,
        label=label,
        mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
        template=HASH_TEMPLATE,
    )
    return f"hash key {label!r} (HMAC-SHA256, 256 bits)"


def _new_signing_key(session: Any, label: str, eddsa: bool) -> str:
    curve, key_type, mechanism, name = (
        (ED25519_CURVE, KeyType.EC_EDWARDS, Mechanism.EC_EDWARDS_KEY_PAIR_GEN, ED25519)
        if eddsa
        else (P256_CURVE, KeyType.EC, Mechanism.EC_KEY_PAIR_GEN, ES256)
    )
    session.generate_keypair(
        key_type,
        mechanism=mechanism,
        label=label,
        public_template={**PUBLIC_TEMPLATE, Attribute.EC_PARAMS: _curve(curve)},
        private_template=PRIVATE_TEMPLATE,
    )
    return f"signing key {label!r} ({name})"


def _curve(oid: str) -> bytes:
    return bytes(encode_named_curve_parameters(oid))


__all__ = ["Token", "generate", "pkcs11", "token_key_ring", "token_of"]
