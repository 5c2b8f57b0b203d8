"""Signed tree heads and the offline checks an outsider runs: no database here, only the files.

A tree head is the audit log's size and Merkle root at a time; the court signs it with its Ed25519 key
(the `cryptography` package). The signed message is `HEAD_FORMAT`, the size, the root in hex and the time,
one per line. A court publishes its heads (the daily report carries the day's); anyone holding one can
later check that the log still contains exactly what it did (a consistency proof) and that an exported
event is in it (an inclusion proof), with the court's public key and nothing else.

The private key comes from CLERK_AUDIT_KEY (PEM or 64 hex digits) or from the file CLERK_AUDIT_KEY_FILE,
by default `<data dir>/audit-signing.key`, made on first use with mode 0600. It is never written into the
repository (var/ is ignored) nor printed; `clerk audit public-key` prints the public half.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from clerk.settings import Settings
from clerk.store.audit import leaf_entry
from models import merkle, proof
from models.values import InvalidValue

HEAD_FORMAT = "query-clerk audit tree head v1"
INDEXED_HEAD_FORMAT = "query-clerk audit tree head v2"
EXPORT_FORMAT = "query-clerk audit export v1"
CONSISTENCY_FORMAT = "query-clerk audit consistency v1"


class HeadError(ValueError):
    """A head, key or proof file that cannot be used: it names what and why."""


def key_id(public: Ed25519PublicKey) -> str:
    return proof.key_id(public)


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _private_from_text(text: str, field_name: str) -> Ed25519PrivateKey:
    try:
        return proof.private_key(text, field_name)
    except InvalidValue as exc:
        raise HeadError(str(exc)) from None


def load_private_key(text: str | None, path: Path, *, create: bool) -> Ed25519PrivateKey:
    """The court's signing key: `text` if given, else the file at `path`, made there if `create`."""
    if text:
        return _private_from_text(text, "CLERK_AUDIT_KEY")
    if path.exists():
        return _private_from_text(path.read_text(encoding="ascii"), f"CLERK_AUDIT_KEY_FILE ({path})")
    if not create:
        raise HeadError(f"no audit signing key at {path}: set CLERK_AUDIT_KEY_FILE or CLERK_AUDIT_KEY")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and linked into place: a process starting at the same moment either finds no file
    # or the whole key, never half of one, and the first to link wins.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    try:
        os.link(partial, path)
    except FileExistsError:
        return load_private_key(None, path, create=False)
    finally:
        partial.unlink()
    return key


def signing_key(settings: Settings, *, create: bool = True) -> Ed25519PrivateKey:
    """This installation's signing key, as its settings name it."""
    text = settings.audit_key.get_secret_value() if settings.audit_key else None
    return load_private_key(text, settings.effective_audit_key_file, create=create)


def load_public_key(value: str) -> Ed25519PublicKey:
    """A public key from a file (PEM) or given inline (PEM, or base64 or hex of its 32 bytes)."""
    text = value
    if "-----BEGIN" not in value and len(value) < 1000 and Path(value).is_file():
        text = Path(value).read_text(encoding="ascii")
    try:
        return proof.public_key(text, "--public-key")
    except InvalidValue as exc:
        raise HeadError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class SignedHead:
    """A signed tree head. v2 (with `index_root`) also commits to the per-case index: the root of the tree
    over the log's `cases` (clerk.store.caseindex) at this size. v1 heads, signed before it, have neither."""

    size: int
    root: str  # hex
    signed_at: str  # ISO 8601, UTC
    key_id: str
    signature: str  # base64
    index_root: str | None = None  # hex
    cases: int | None = None

    @staticmethod
    def message(
        size: int, root: str, signed_at: str, index_root: str | None = None, cases: int | None = None
    ) -> bytes:
        if index_root is None:
            return f"{HEAD_FORMAT}\n{size}\n{root}\n{signed_at}\n".encode("ascii")
        return f"{INDEXED_HEAD_FORMAT}\n{size}\n{root}\n{signed_at}\n{index_root}\n{cases}\n".encode("ascii")

    @classmethod
    def sign(
        cls,
        key: Ed25519PrivateKey,
        size: int,
        root: bytes,
        at: dt.datetime,
        index: tuple[bytes, int] | None = None,
    ) -> SignedHead:
        """Sign a head; with `index` (its root, its number of cases) a v2 head."""
        signed_at = at.astimezone(dt.UTC).isoformat(timespec="seconds")
        index_root, cases = (index[0].hex(), index[1]) if index is not None else (None, None)
        signature = key.sign(cls.message(size, root.hex(), signed_at, index_root, cases))
        return cls(
            size,
            root.hex(),
            signed_at,
            key_id(key.public_key()),
            base64.b64encode(signature).decode(),
            index_root,
            cases,
        )

    def check(self, public: Ed25519PublicKey) -> None:
        if self.key_id != key_id(public):
            raise HeadError(
                f"the head of {self.size} was signed with key {self.key_id}, not {key_id(public)}"
            )
        try:
            public.verify(
                base64.b64decode(self.signature),
                self.message(self.size, self.root, self.signed_at, self.index_root, self.cases),
            )
        except (InvalidSignature, binascii.Error):
            raise HeadError(
                f"the head of {self.size} event(s) does not carry the court's signature"
            ) from None

    def as_dict(self) -> dict[str, Any]:
        """Its fields as JSON; a v1 head's as they always were (no index fields)."""
        data = asdict(self)
        if self.index_root is None:
            del data["index_root"], data["cases"]
        return data

    @property
    def short(self) -> str:
        """What a person keeps: `SIZE:ROOT`."""
        return f"{self.size}:{self.root}"

    @classmethod
    def of(cls, data: Mapping[str, Any], where: str = "head") -> SignedHead:
        try:
            indexed = data.get("index_root") is not None
            head = cls(
                int(data["size"]),
                str(data["root"]),
                str(data["signed_at"]),
                str(data["key_id"]),
                str(data["signature"]),
                str(data["index_root"]) if indexed else None,
                _count(data["cases"]) if indexed else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise HeadError(
                f"{where}: not a signed head (size, root, signed_at, key_id, signature; "
                "v2: index_root, cases)"
            ) from None
        _hex32(head.root, f"{where}.root")
        if head.index_root is not None:
            _hex32(head.index_root, f"{where}.index_root")
        return head


@dataclass(frozen=True, slots=True)
class KeptHead:
    """A head someone kept: `SIZE:ROOT`, or a signed head's JSON (a file or the text)."""

    size: int
    root: str
    signed: SignedHead | None = None

    @classmethod
    def parse(cls, value: str, field_name: str = "--expect-head") -> KeptHead:
        text = value
        if (
            len(value) < 1000
            and not value.lstrip().startswith("{")
            and ":" not in value
            and Path(value).is_file()
        ):
            text = Path(value).read_text(encoding="utf-8")
        text = text.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                raise HeadError(f"{field_name}: not JSON") from None
            signed = SignedHead.of(data.get("head", data) if isinstance(data, dict) else {}, field_name)
            return cls(signed.size, signed.root, signed)
        size, _, root = text.partition(":")
        if not size.isdigit() or not root:
            raise HeadError(
                f"{field_name}: {value[:80]!r} is not a head: give SIZE:ROOT or a signed head's file"
            )
        _hex32(root, field_name)
        return cls(int(size), root)


def _hex32(value: str, field_name: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise HeadError(f"{field_name}: a root is 64 hex digits")
    return raw


@dataclass
class Check:
    """What an offline check found: `problems` empty means everything held."""

    events: int = 0
    head: SignedHead | None = None
    problems: list[str] = field(default_factory=list)
    complete: bool | None = None  # an export's completeness: None when its head carries no index (v1)

    @property
    def ok(self) -> bool:
        return not self.problems


def _hashes(values: Sequence[Any], where: str) -> list[bytes]:
    if not isinstance(values, list):
        raise HeadError(f"{where}: not a list of hashes")
    return [_hex32(str(v), where) for v in values]


def check_export(
    document: Mapping[str, Any], public: Ed25519PublicKey, kept: KeptHead | None = None
) -> Check:
    """Check a case's export with no database: the head's signature, each event's leaf hash from its
    fields and its inclusion proof against the head, and, given a head kept earlier, that the export's
    head extends it (the consistency proof the export carries)."""
    if document.get("format") != EXPORT_FORMAT:
        raise HeadError(f"not an audit export: its format is not {EXPORT_FORMAT!r}")
    head = SignedHead.of(document.get("head") or {}, "head")
    result = Check(head=head)
    try:
        head.check(public)
    except HeadError as exc:
        result.problems.append(str(exc))
    root = bytes.fromhex(head.root)
    case_number = document.get("case_number")
    events = document.get("events")
    if not isinstance(events, list):
        result.problems.append("events: not a list of events")
        events = []
    seen: set[int] = set()
    listed: list[tuple[int, bytes]] = []  # (position, leaf hash) of each readable event, as listed
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            result.problems.append(f"events[{i}]: not an event (an object with its fields and proof)")
            continue
        position = event.get("position")
        where = f"event {position}" if _is_position(position) else f"events[{i}]"
        if not _is_position(position):
            result.problems.append(f"{where}: its position {position!r} is not a whole number from 0")
            continue
        if position in seen:
            result.problems.append(f"{where}: listed twice")
            continue
        seen.add(position)
        try:
            salt = event.get("salt")
            entry = leaf_entry(
                str(event["occurred_at"]),
                str(event["actor"]),
                str(event["action"]),
                event["case_number"],
                str(event["payload"]),
                None if salt is None else str(salt),
            )
            proof = _hashes(event["inclusion_proof"], f"{where}.inclusion_proof")
        except (KeyError, TypeError, ValueError, HeadError) as exc:
            result.problems.append(f"{where}: unreadable ({exc.__class__.__name__})")
            continue
        result.events += 1
        leaf = merkle.leaf_hash(entry)
        if listed and position < listed[-1][0]:
            result.problems.append(
                f"{where}: listed after event {listed[-1][0]}: an export lists events in log order"
            )
        listed.append((position, leaf))
        if event.get("case_number") != case_number:
            result.problems.append(f"{where}: belongs to another case")
        if leaf.hex() != event.get("leaf_hash"):
            result.problems.append(f"{where}: its fields do not match its leaf hash (edited)")
        try:
            merkle.verify_inclusion(position, head.size, leaf, proof, root)
        except merkle.ProofError as exc:
            result.problems.append(f"{where}: {exc}")
    completeness = _completeness_problems(document.get("index"), head, case_number, listed)
    if completeness is not None:
        result.problems.extend(completeness)
        result.complete = not completeness
    if kept is not None:
        consistency = document.get("consistency") or {}
        from_kept = int(consistency.get("from_size", -1)) == kept.size
        result.problems.extend(
            _kept_problems(kept, head, consistency.get("proof") if from_kept else None, public)
        )
    return result


def _completeness_problems(
    entry: object, head: SignedHead, case_number: object, listed: Sequence[tuple[int, bytes]]
) -> list[str] | None:
    """What keeps the export from proving it holds every event of its case under the head: the case's
    index entry must be in the head's index (its inclusion proof), and the events listed must rebuild it
    (their number, and the running hash over their leaves in log order from the case's salt). None: the
    head is v1 and commits to no index, so completeness cannot be proven."""
    if head.index_root is None or head.cases is None:
        return None
    if not isinstance(entry, dict):
        return ["the export carries no index entry for its case: that it is complete is not proven"]
    try:
        slot, events = entry["slot"], entry["events"]
        if not (_is_position(slot) and _is_position(events)) or entry["cases"] != head.cases:
            raise ValueError("slot, events or cases")
        salt, chain = _hex32(str(entry["salt"]), "index.salt"), _hex32(str(entry["chain"]), "index.chain")
        proof = _hashes(entry["inclusion_proof"], "index.inclusion_proof")
    except (KeyError, TypeError, ValueError, HeadError) as exc:
        return [f"index: unreadable ({exc.__class__.__name__}): that the export is complete is not proven"]
    if not isinstance(case_number, str):
        return ["case_number: not a case number"]
    leaf = merkle.leaf_hash(merkle.case_entry(case_number, events, chain))
    try:
        merkle.verify_inclusion(slot, head.cases, leaf, proof, bytes.fromhex(head.index_root))
    except merkle.ProofError as exc:
        return [f"index: the case's entry is not the one under the signed head ({exc})"]
    if len(listed) != events:
        gap = events - len(listed)
        what = f"{gap} missing" if gap > 0 else f"{-gap} too many"
        return [f"the case has {events} event(s) under the head, the export lists {len(listed)}: {what}"]
    rebuilt = salt
    for _, leaf_hash in listed:
        rebuilt = merkle.chain_next(rebuilt, leaf_hash)
    if rebuilt != chain:
        return [
            "the events listed are not the case's events in log order (one replaced, moved or of "
            "another case): they do not rebuild the index's running hash"
        ]
    return []


def _count(value: object) -> int:
    if not _is_position(value):
        raise ValueError(value)
    return value


def _is_position(value: object) -> TypeGuard[int]:
    """A leaf's position in the log: a JSON integer from 0 (not 5.7, "5" or true)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _kept_problems(
    kept: KeptHead, head: SignedHead, proof_hex: Sequence[Any] | None, public: Ed25519PublicKey
) -> list[str]:
    """What is wrong between a kept head and a later one, given the consistency proof between them (None:
    no proof from the kept head's size came with it)."""
    if kept.signed is not None:
        try:
            kept.signed.check(public)
        except HeadError as exc:
            return [f"the kept head: {exc}"]
    if kept.size > head.size:
        return [f"the log has {head.size} event(s), fewer than the {kept.size} of the kept head: it was cut"]
    proof: list[bytes] = []
    if kept.size not in (0, head.size):
        if proof_hex is None:
            return [f"the export carries no consistency proof from the kept head of {kept.size}"]
        proof = _hashes(proof_hex, "consistency.proof")
    try:
        merkle.verify_consistency(
            kept.size, head.size, bytes.fromhex(kept.root), bytes.fromhex(head.root), proof
        )
    except merkle.ProofError as exc:
        return [f"the log changed since the kept head: {exc}"]
    return []


def check_consistency(
    document: Mapping[str, Any], public: Ed25519PublicKey, kept: KeptHead | None = None
) -> Check:
    """Check a consistency proof file (`clerk audit consistency --output`): both heads signed, the newer
    one extends the older one, and, given the head the recipient kept, that the proof starts from it (a
    proof from another head proves nothing to them)."""
    if document.get("format") != CONSISTENCY_FORMAT:
        raise HeadError(f"not a consistency proof: its format is not {CONSISTENCY_FORMAT!r}")
    old = SignedHead.of(document.get("old") or {}, "old")
    new = SignedHead.of(document.get("new") or {}, "new")
    result = Check(head=new)
    problems = _kept_problems(KeptHead(old.size, old.root, old), new, document.get("proof") or [], public)
    if kept is not None and (kept.size, kept.root) != (old.size, old.root):
        problems.append(
            f"the proof starts from the head {old.size}:{old.root[:16]}…, not the kept head "
            f"{kept.size}:{kept.root[:16]}…"
        )
    try:
        new.check(public)
    except HeadError as exc:
        problems.insert(0, str(exc))
    result.problems.extend(problems)
    return result
