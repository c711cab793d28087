"""Red team: the low findings of issue 18 that are fixed (the others are limits in
SECURITY.md "Side doors")."""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat

from redteam import by_topic, leaks, run_graph
from veil_testing import framed, media_record, message

from veil.pipelines.local import sanitize_files
from veil.transforms.crypto import LocalKeyring
from veil.transforms.crypto.store import SqliteKeyStore
from veil.transforms.records import Modality
from veil.transforms.routing import sniff_magic

EMAIL = "john.smith@example.com"


def test_utf16_bom_is_text_not_mp3(tmp_path):
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        payload = bom + f"Mail {EMAIL} today.".encode(codec)
        assert sniff_magic(payload) == Modality.TEXT
    msgs = [
        message(
            framed(media_record("u16", "alice", payload, content_type="application/octet-stream")),
            0,
            b"alice",
        )
    ]
    writes, _ = run_graph(msgs, "--veil_step_isolation=off", tmp=tmp_path)
    assert (
        leaks(writes, EMAIL) == []
        and leaks(writes, EMAIL.encode("utf-16-be").decode("latin-1")) == []
    )
    outcomes = by_topic(writes, ".dead-letter") + by_topic(writes, ".sanitized.text")
    assert len(outcomes) == 1
    assert not any(w.topic.endswith(".audio") for w in writes)
    if outcomes[0].topic.endswith(".dead-letter"):
        assert outcomes[0].record["error_code"] == "TEXT_DECODE_ERROR"


def test_sqlite_key_store_is_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        SqliteKeyStore(tmp_path / "keys.db")
        loose = tmp_path / "loose.db"
        loose.write_bytes(b"")
        loose.chmod(0o644)
        SqliteKeyStore(loose)
    finally:
        os.umask(old)
    for name in ("keys.db", "loose.db"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_sanitize_with_a_key_store_dials_no_broker(tmp_path, monkeypatch):
    """A listening socket stands in for a broker: `veil sanitize` must never connect."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    monkeypatch.setenv("VEIL_REDTEAM_MASTER", secrets.token_hex(32))
    LocalKeyring.create(tmp_path / "keyring.json", "VEIL_REDTEAM_MASTER")
    src = tmp_path / "John_Smith_SSN_123-45-6789.txt"
    src.write_text(f"Write to {EMAIL}.")
    try:
        summary = sanitize_files(
            [str(src)],
            tmp_path / "out",
            beam_argv=[
                f"--veil_bootstrap_servers=127.0.0.1:{port}",
                f"--veil_key_store={tmp_path / 'keys.db'}",
                f"--veil_keyring={tmp_path / 'keyring.json'}",
                "--veil_master_key_env=VEIL_REDTEAM_MASTER",
                "--veil_step_isolation=off",
            ],
        )
        try:
            listener.accept()
            connected = True
        except BlockingIOError:
            connected = False
    finally:
        listener.close()
    assert summary["sanitized"] == 1
    assert not connected
    audit = (tmp_path / "out" / "audit.jsonl").read_text()
    ids = {json.loads(line)["record_id"] for line in audit.splitlines()}
    assert not any(i and ("John" in i or "123-45-6789" in i) for i in ids)
    assert EMAIL not in (tmp_path / "out" / src.name).read_text()


def test_dead_letter_original_of_erased_subject_no_longer_decrypts(tmp_path, monkeypatch):
    from veil.transforms.crypto import DecryptionError, KeyServiceConfig

    monkeypatch.setenv("VEIL_REDTEAM_MASTER", secrets.token_hex(32))
    LocalKeyring.create(tmp_path / "keyring.json", "VEIL_REDTEAM_MASTER")
    config = KeyServiceConfig(
        store=str(tmp_path / "keys.db"),
        keyring=str(tmp_path / "keyring.json"),
        master_key_env="VEIL_REDTEAM_MASTER",
    )
    bad = media_record("d1", "bob", f"{EMAIL} \xff".encode("latin-1"))  # not UTF-8
    writes, _ = run_graph(
        [message(framed(bad), 0, b"bob")],
        f"--veil_key_store={config.store}",
        f"--veil_keyring={config.keyring}",
        "--veil_master_key_env=VEIL_REDTEAM_MASTER",
        "--veil_erasure_listener=off",
        "--veil_step_isolation=off",
        tmp=tmp_path,
    )
    assert leaks(writes, EMAIL) == []
    (dead,) = by_topic(writes, ".dead-letter")
    service = config.open()
    assert b"john.smith" in service.open_dead_letter(dead.record["original"], "veil.raw/0/0")
    service.forget("bob")
    service.clear_cache()
    try:
        service.open_dead_letter(dead.record["original"], "veil.raw/0/0")
        opened = True
    except DecryptionError:
        opened = False
    assert not opened


def test_flac_silence_bomb_refused_before_decoding():
    """299 s of 96 kHz stereo silence in ~110 KB of FLAC once took 1.22 GB to sanitize."""
    import io
    import resource

    import numpy as np
    import soundfile

    from veil.transforms.audio.codec import AudioError, AudioLimits, decode_audio
    from veil.transforms.sandbox import NATIVE_DECODERS, sandbox_for

    buf = io.BytesIO()
    soundfile.write(buf, np.zeros((299 * 96000, 2), np.int16), 96000, format="FLAC")
    bomb = buf.getvalue()
    assert len(bomb) < 200_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for sandbox in (None, sandbox_for(NATIVE_DECODERS)):
        try:
            decode_audio(bomb, AudioLimits(), sandbox)
            code = None
        except AudioError as exc:
            code = exc.code
        assert code == "AUDIO_TOO_LARGE"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, grown_mb
