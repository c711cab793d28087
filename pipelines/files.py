"""Local files in and out of the pipeline, for ``veil produce`` and ``veil sanitize``.

A plain file becomes one ``MediaRecord`` (modality sniffed unless given). A ``.jsonl``
file holds one record per line in MediaRecord's JSON form::

    {"record_id": "r1", "subject_key": "alice", "content_type": "text/plain",
     "payload": "text payloads as a string", "attributes": {"k": "v"}}

(``payload_base64`` instead of ``payload`` for binary content.)

``veil sanitize`` names its inputs only by opaque ids (``InputIds``): no file name ever
reaches a record id, a ``source.topic``, an audit event or a dead letter. Its outputs keep
the inputs' relative paths under ``--out`` (``collect_inputs``), so two inputs of the same
name never overwrite each other.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import mimetypes
import os
import secrets
import uuid
from pathlib import Path, PurePosixPath

from veil.schemas import MEDIA_RECORD
from veil.transforms.records import KafkaMessage


class InputError(ValueError):
    """A local input file or line cannot become a MediaRecord."""


class UsageError(ValueError):
    """The inputs or the output directory of ``veil sanitize`` cannot be used as given
    (exit code 2); the message names the path and what to do."""


def record_from_file(
    path: Path, subject: str, modality: str | None = None, record_id: str | None = None
) -> dict:
    """One MediaRecord for a plain file. The record id is opaque (``record_id``, else a
    random one): never derived from the file name, which may itself be personal data."""
    content_type, _ = mimetypes.guess_type(path.name)
    return {
        "record_id": record_id or uuid.uuid4().hex,
        "subject_key": subject,
        "modality": modality,
        "content_type": content_type or "application/octet-stream",
        "payload": path.read_bytes(),
        "attributes": {},
        "event_time": None,
    }


def record_from_json(obj: dict, default_subject: str | None) -> dict:
    if not isinstance(obj, dict):
        raise InputError("a line must hold a JSON object")
    if "payload_base64" in obj:
        payload = base64.b64decode(obj["payload_base64"], validate=True)
    elif isinstance(obj.get("payload"), str):
        payload = obj["payload"].encode("utf-8")
    else:
        raise InputError("a record needs 'payload' (string) or 'payload_base64'")
    subject = obj.get("subject_key") or default_subject
    if not subject:
        raise InputError("a record needs 'subject_key' (or pass --subject)")
    attributes = obj.get("attributes") or {}
    return {
        "record_id": str(obj.get("record_id") or uuid.uuid4().hex),
        "subject_key": str(subject),
        "modality": obj.get("modality"),
        "content_type": obj.get("content_type") or "text/plain; charset=utf-8",
        "payload": payload,
        "attributes": {str(k): str(v) for k, v in attributes.items()},
        "event_time": obj.get("event_time"),
    }


def iter_records(paths, subject: str | None, modality: str | None = None):
    """Yields ``(path, line_number_or_None, record_or_InputError)``."""
    for path in map(Path, paths):
        if path.suffix == ".jsonl":
            with path.open("r", encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        yield path, number, record_from_json(json.loads(line), subject)
                    except (ValueError, InputError) as exc:
                        yield (
                            path,
                            number,
                            InputError(
                                f"{path}:{number}: {type(exc).__name__}"
                                + (f": {exc}" if isinstance(exc, InputError) else "")
                            ),
                        )
        else:
            yield path, None, record_from_file(path, subject or path.stem, modality)


# --- veil sanitize: inputs, opaque ids, output plan --------------------------------------

ID_KEY_SCOPE = "sanitize-input-id"
RESERVED_OUTPUTS = ("audit.jsonl", "dead-letter.jsonl")
SIDECAR_SUFFIX = ".veil.json"


class InputIds:
    """Opaque, keyed ids for local inputs: 32 hex digits of HMAC-SHA256(key, relative path),
    the opaque form decoding keeps unchanged (``veil.transforms.ids.is_opaque``).

    With a key file (``veil keys init``; ``--id-key`` / ``$VEIL_ID_KEY_FILE``) the id of a
    file is the same on every run, and only the key's holder can test which path it
    names. Without one, a random key per run: ids link nothing across runs. Either way
    the name never appears in an output; the sidecar beside each output file carries its
    id, and ``--id-map`` writes the id -> path table to a file the user keeps.
    """

    def __init__(self, key: bytes | None = None):
        self._key = key or secrets.token_bytes(32)

    @classmethod
    def from_key_file(cls, path: str | None) -> InputIds:
        if not path:
            return cls()
        from veil.transforms.keys import FileKeys, KeyUnavailable

        try:
            return cls(FileKeys(path).key_for(ID_KEY_SCOPE))
        except KeyUnavailable as exc:
            raise UsageError(f"--id-key {path}: not a usable key file ({exc})") from None

    def __call__(self, relative: PurePosixPath) -> str:
        mac = hmac.new(self._key, b"veil-input\0" + str(relative).encode(), hashlib.sha256)
        return mac.hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class LocalInput:
    """One input file of ``veil sanitize``."""

    path: Path  # where it is read
    relative: PurePosixPath  # where its outputs go under --out
    input_id: str  # opaque: record id (plain files) and source.topic of its records
    root: Path | None = None  # the directory argument it was found under, if any

    @property
    def jsonl(self) -> bool:
        return self.path.suffix == ".jsonl"

    def outputs(self, out: Path) -> list[Path]:
        target = out / self.relative
        return [target] if self.jsonl else [target, sidecar_path(target)]


def sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + SIDECAR_SUFFIX)


def collect_inputs(paths, ids: InputIds | None = None) -> list[LocalInput]:
    """Files named by ``paths`` (directories: every regular file below, sorted), each
    with its path relative to the inputs' common directory. Raises ``UsageError`` for a
    missing path, an empty directory or a file given twice."""
    ids = ids or InputIds()
    files: list[tuple[Path, Path | None]] = []
    roots: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file())
            if not found:
                raise UsageError(f"{raw}: directory holds no file")
            files.extend((f, path) for f in found)
            roots.append(os.path.abspath(path))
        elif path.is_file():
            files.append((path, None))
            roots.append(os.path.dirname(os.path.abspath(path)))
        elif path.exists():
            raise UsageError(f"{raw}: not a regular file or directory")
        else:
            raise UsageError(f"{raw}: no such file or directory")
    base = os.path.commonpath(roots)
    seen: dict[Path, Path] = {}
    inputs = []
    for path, root in files:
        real = path.resolve()
        if real in seen:
            raise UsageError(f"{path}: given twice (also as {seen[real]})")
        seen[real] = path
        relative = PurePosixPath(Path(os.path.relpath(os.path.abspath(path), base)).as_posix())
        inputs.append(LocalInput(path, relative, ids(relative), root))
    return inputs


def check_output_dir(inputs: list[LocalInput], out: Path, overwrite: bool = False) -> None:
    """Refuses an output directory that is, holds, or lies inside an input directory or
    holds an input file; outputs of two inputs at one path; and (without ``overwrite``)
    an existing output file. Nothing is written before this passes."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory")
    out_real = out.resolve()
    for item in inputs:
        real = item.path.resolve()
        if real.is_relative_to(out_real):
            raise UsageError(
                f"--out {out} holds the input {item.path}: choose a directory outside "
                "the inputs (outputs would overwrite or mix with them)"
            )
        if item.root is not None and out_real.is_relative_to(item.root.resolve()):
            raise UsageError(
                f"--out {out} is inside the input directory {item.root}: choose a directory "
                "outside it (a later run would read the outputs as inputs)"
            )
    targets: dict[str, str] = {str(out / name): "Veil's own log" for name in RESERVED_OUTPUTS}
    for item in inputs:
        for target in item.outputs(out):
            key = str(target)
            if key in targets:
                raise UsageError(
                    f"{item.path} would be written to {target}, which {targets[key]} "
                    "also writes: rename or move one of them"
                )
            targets[key] = f"the input {item.path}"
    if not overwrite:
        existing = sorted(t for t in targets if os.path.lexists(t))
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise UsageError(
                f"{existing[0]} exists{more}: pass --overwrite to replace earlier outputs, "
                "or choose an empty --out"
            )


def encode_record(record: dict, schemas=None) -> bytes:
    """A framed MediaRecord; ``schemas``: a ``RegistryBinding`` (registry ids) or None."""
    from veil.schemas.registry import codec

    return codec(schemas).encode(MEDIA_RECORD, record)


def to_json(subject: str, record: dict) -> dict:
    """A decoded record in readable JSON form (text payloads as text)."""
    out = {}
    for key, value in record.items():
        if key == "payload" or isinstance(value, (bytes, bytearray)):
            out.update(_payload_json(key, value))
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat()
        elif isinstance(value, dict):  # nested records, e.g. an audit event's chain link
            out[key] = {k: _bytes_note(v) for k, v in value.items()}
        elif isinstance(value, list):
            out[key] = [
                {k: _bytes_note(v) for k, v in v_.items()} if isinstance(v_, dict) else v_
                for v_ in value
            ]
        else:
            out[key] = value
    return out


def _bytes_note(value):
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value


def _payload_json(key: str, value) -> dict:
    if value is None:
        return {key: None}
    try:
        return {key: value.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{key}_base64": base64.b64encode(value).decode()}


def file_messages(
    inputs,
    subject: str | None,
    errors: list,
    modality: str | None = None,
    modalities: set | None = None,
) -> list[KafkaMessage]:
    """Local inputs as ``KafkaMessage``s: topic = the input's opaque id, offset = record
    number. ``inputs``: ``LocalInput``s (or paths, collected with a random id key).
    ``modalities``: if given, the modality routing will give each record is added to it
    (the same ``detect_modality``), so the caller builds only the branches it needs."""
    from veil.transforms.routing import detect_modality

    if inputs and not isinstance(inputs[0], LocalInput):
        inputs = collect_inputs(inputs)
    messages = []
    for item in inputs:
        for index, (_, line, record) in enumerate(iter_records([item.path], subject, modality)):
            if isinstance(record, InputError):
                # For the console only (the paths the user typed); never in a file.
                errors.append(str(record))
                value = b""  # still one record in, so it still yields one dead letter
            else:
                if not item.jsonl:
                    record["record_id"] = item.input_id
                value = encode_record(record)
                if modalities is not None:
                    found, _ = detect_modality(
                        record.get("modality"),
                        record.get("content_type") or "",
                        record.get("payload") or b"",
                    )
                    if found is not None:
                        modalities.add(found)
            messages.append(
                KafkaMessage(
                    topic=item.input_id,
                    partition=0,
                    offset=(line - 1) if line else index,
                    timestamp_ms=0,
                    key=None,
                    value=value,
                )
            )
    return messages
