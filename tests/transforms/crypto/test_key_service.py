"""Key service: contexts, rotation matrix, nonce budget, KEK rotation, erasure, concurrency."""

from __future__ import annotations

import multiprocessing
import re
from pathlib import Path

import pytest
from crypto_testing import fresh_service, local_config

from veil.transforms.crypto import DecryptionError, KmsError, LocalKeyring, SubjectErased
from veil.transforms.crypto.service import EnvelopeContext
from veil.transforms.keys import SecretKeys

CRYPTO_DIR = Path(__file__).resolve().parents[3] / "transforms"


@pytest.fixture()
def service(tmp_path):
    return fresh_service(local_config(tmp_path))


def test_only_aead_touches_hazmat():
    users = [
        p.relative_to(CRYPTO_DIR).as_posix()
        for p in CRYPTO_DIR.rglob("*.py")
        if re.search(r"^\s*(from|import) cryptography", p.read_text(), re.M)
    ]
    assert users == ["crypto/aead.py"]


def test_round_trip_and_context_binding(service):
    ctx = service.context("r1", "patient-7", "$.name")
    assert ctx.subject_key_id.startswith("s:") and "patient-7" not in ctx.subject_key_id
    env = service.encrypt(b"Jane Doe", ctx)
    assert service.decrypt(env, ctx) == b"Jane Doe"
    for other in (
        service.context("r2", "patient-7", "$.name"),
        service.context("r1", "patient-8", "$.name"),
        service.context("r1", "patient-7", "$.ssn"),
        ctx._replace(schema_version="SanitizedRecord/2"),
    ):
        with pytest.raises(DecryptionError):
            service.decrypt(env, other)


def test_subjects_get_their_own_keys(service):
    a, b = service.context("r", "a", "p"), service.context("r", "b", "p")
    env_a = service.encrypt(b"x", a)
    assert service.envelope_key(env_a)[0] == a.subject_key_id
    # An envelope of subject a, relabelled as b's (header and context), does not open.
    from veil.transforms.crypto import aead

    _, _, end = aead.parse_header(env_a)
    forged = aead.header(b.subject_key_id, 1) + env_a[end:]
    service.encrypt(b"y", b)  # b has a key
    with pytest.raises(DecryptionError):
        service.decrypt(forged, b)


def test_rotation_matrix(service):
    """Every version decrypts what it encrypted until retired; new data uses the newest."""
    ctx = service.context("r", "subject", "p")
    key_id = ctx.subject_key_id
    envelopes = {}
    for version in (1, 2, 3):
        if version > 1:
            assert service.rotate(key_id).version == version
        env = service.encrypt(f"v{version}".encode(), ctx)
        assert service.envelope_key(env) == (key_id, version)
        envelopes[version] = env
    service.retire(key_id, 1)
    service.clear_cache()
    expected = {1: False, 2: True, 3: True}
    for version, env in envelopes.items():
        if expected[version]:
            assert service.decrypt(env, ctx) == f"v{version}".encode()
        else:
            with pytest.raises(DecryptionError):
                service.decrypt(env, ctx)


def test_usage_counter_forces_a_new_version(tmp_path):
    service = fresh_service(local_config(tmp_path, max_uses=40, lease=8))
    ctx = service.context("r", "busy", "p")
    versions = [service.envelope_key(service.encrypt(b"x", ctx))[1] for _ in range(100)]
    assert versions == sorted(versions) and versions[-1] >= 3
    counts = {v: versions.count(v) for v in set(versions)}
    assert max(counts.values()) <= 40
    assert all(service.decrypt(service.encrypt(b"z", ctx), ctx) == b"z" for _ in range(3))


def test_kek_rotation_rewraps_without_touching_data(tmp_path):
    config = local_config(tmp_path)
    service = fresh_service(config)
    ctx = service.context("r", "s1", "p")
    env = service.encrypt(b"before", ctx)
    before = {(k["key_id"], k["version"]): k["kek"] for k in service.list_keys() if "kek" in k}
    result = service.rotate_kek(retire_old=True)
    assert result["kek_version"] == 2 and result["rewrapped"] == len(before)
    assert result["retired"] == [1]
    after = fresh_service(config)  # a new process: only KEK v2 exists now
    assert {k["kek"] for k in after.list_keys() if "kek" in k} == {"local/2"}
    assert after.decrypt(env, ctx) == b"before"
    assert LocalKeyring(config.keyring, config.master_key_env).versions() == [2]


def test_wrong_master_key_refused(tmp_path, monkeypatch):
    config = local_config(tmp_path)
    monkeypatch.setenv(config.master_key_env, "22" * 32)
    with pytest.raises(KmsError):
        config.kms()


def test_erasure_nothing_decrypts_after(tmp_path):
    config = local_config(tmp_path, cache_ttl_s=0.2)
    service = fresh_service(config)
    worker = fresh_service(config)  # another worker with a warm cache
    ctx = service.context("r", "erase-me", "$.name")
    envs = [service.encrypt(b"v1", ctx)]
    service.rotate(ctx.subject_key_id)
    envs.append(service.encrypt(b"v2", ctx))
    other = service.context("r", "keep-me", "$.name")
    kept = service.encrypt(b"kept", other)
    assert [worker.decrypt(e, ctx) for e in envs] == [b"v1", b"v2"]
    key_id, destroyed = service.forget("erase-me")
    assert (key_id, destroyed) == (ctx.subject_key_id, 2)
    # The other worker's cache expires within the TTL (the stated deadline).
    import time

    time.sleep(0.25)
    for svc in (service, worker, fresh_service(config)):  # incl. a replay in a new process
        for env in envs:
            with pytest.raises(DecryptionError):
                svc.decrypt(env, ctx)
        assert svc.decrypt(kept, other) == b"kept"
        with pytest.raises(SubjectErased):
            svc.encrypt(b"new", ctx)
    assert {"key_id": ctx.subject_key_id, "state": "erased"} in service.list_keys()
    raw = Path(config.store).read_bytes()
    assert b"erase-me" not in raw


def test_secret_keys_adapter(service, tmp_path):
    keys = service.secret_keys()
    assert isinstance(keys, SecretKeys)
    k1 = keys.key_for("pseudonym")
    assert len(k1) == 32 and k1 == keys.key_for("pseudonym") != keys.key_for("voice")
    assert fresh_service(local_config(tmp_path)).secret_keys().key_for("pseudonym") == k1


def test_dead_letter_context(service):
    ctx = service.dead_letter_context("veil.raw/0/5")
    env, key_id, version = service.encrypt_with_key(b"raw bytes", ctx)
    assert key_id == "veil:dead-letter" and version == 1
    assert service.decrypt(env, ctx) == b"raw bytes"
    with pytest.raises(DecryptionError):
        service.decrypt(env, service.dead_letter_context("veil.raw/0/6"))


def _first_use(args):
    config, subject = args
    service = fresh_service(config)
    ctx = service.context("r", subject, "p")
    env = service.encrypt(b"hello", ctx)
    return service.envelope_key(env), env


def test_concurrent_first_use_yields_one_key(tmp_path):
    config = local_config(tmp_path)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        results = pool.map(_first_use, [(config, "new-subject")] * 24)
    keys = {key for key, _ in results}
    assert len(keys) == 1 and next(iter(keys))[1] == 1
    service = fresh_service(config)
    rows = [k for k in service.list_keys() if k["key_id"] == next(iter(keys))[0]]
    assert len(rows) == 1
    assert len([k for k in service.list_keys() if k["key_id"] == "veil:index"]) == 1
    ectx = service.context("r", "new-subject", "p")
    assert all(service.decrypt(env, ectx) == b"hello" for _, env in results)


def test_envelope_context_encoding_is_unambiguous():
    a = EnvelopeContext("ab", "c", "d").aad()
    b = EnvelopeContext("a", "bc", "d").aad()
    assert a != b


def test_key_service_behind_the_secret_keys_door(tmp_path, monkeypatch):
    from veil.transforms.keys import KeyUnavailable, NoKeys, keys_from_config
    from veil.transforms.operators import pseudonym

    config = local_config(tmp_path)
    uri = (
        f"kms:local?store={config.store}&keyring={config.keyring}"
        f"&master_key_env={config.master_key_env}"
    )
    monkeypatch.setenv("VEIL_TEST_PSEUDONYM", uri)
    keys = keys_from_config(None, "VEIL_TEST_PSEUDONYM")
    assert keys.key_id.startswith("kms:")
    assert pseudonym("John Smith", keys) == pseudonym("john  smith", keys)
    assert keys.key_for("pseudonym") == fresh_service(config).secret_keys().key_for("pseudonym")
    broken = keys_from_config("kms:local?store=/nonexistent/dir/x.db", None)
    assert isinstance(broken, NoKeys)
    with pytest.raises(KeyUnavailable):
        broken.key_for("pseudonym")


def test_key_service_options(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    from veil.pipelines.options import ConfigError, VeilConfig

    assert VeilConfig.from_options(PipelineOptions([])).key_service is None
    config = VeilConfig.from_options(
        PipelineOptions(["--veil_key_store=/k.db", "--veil_keyring=/r.json"])
    ).key_service
    assert (config.store, config.keyring, config.master_key_env) == (
        "/k.db",
        "/r.json",
        "VEIL_MASTER_KEY",
    )
    for bad in (
        ["--veil_key_store=/k.db"],
        ["--veil_key_store=/k.db", "--veil_kms=pkcs11"],
        ["--veil_key_store=/k.db", "--veil_keyring=/r", "--veil_key_cache_ttl_s=0"],
    ):
        with pytest.raises(ConfigError):
            VeilConfig.from_options(PipelineOptions(bad))


def test_other_processes_follow_a_kek_rotation(tmp_path):
    config = local_config(tmp_path)
    worker, admin = fresh_service(config), fresh_service(config)
    ctx = worker.context("r", "s1", "p")
    env = worker.encrypt(b"old", ctx)
    admin.rotate_kek(retire_old=True)
    worker.clear_cache()
    assert worker.decrypt(env, ctx) == b"old"  # reloads the keyring for KEK v2
    new_ctx = worker.context("r", "s2", "p")  # a new DEK: wrapped under v2, not retired v1
    env2 = worker.encrypt(b"new", new_ctx)
    assert {k["kek"] for k in admin.list_keys() if "kek" in k} == {"local/2"}
    assert fresh_service(config).decrypt(env2, new_ctx) == b"new"


def test_pseudonym_keys_per_subject_are_shredded_with_the_subject(tmp_path):
    from veil.transforms.keys import FileKeys, SubjectKeyErased, write_key_file
    from veil.transforms.operators import date_shift, pseudonym

    config = local_config(tmp_path)
    service = fresh_service(config)
    keys = service.secret_keys()
    a1 = pseudonym("John Smith", keys, 12, "subject-a")
    assert a1 == pseudonym("john  smith", fresh_service(config).secret_keys(), 12, "subject-a")
    assert a1 != pseudonym("John Smith", keys, 12, "subject-b")
    shift_a = date_shift("2024-01-02", "subject-a", keys)
    p_row = [k for k in service.list_keys() if k["key_id"].startswith("p:")]
    assert len(p_row) == 2 and all(k["version"] == 1 for k in p_row)
    p_a = "p:" + service.subject_key_id("subject-a")[2:]
    wrapped = service._store.get(p_a, 1).wrapped
    key_id, destroyed = service.forget("subject-a")
    assert destroyed == 1  # the pseudonym key (subject-a never had a data key)
    for svc in (service, fresh_service(config)):
        with pytest.raises(SubjectKeyErased):
            pseudonym("John Smith", svc.secret_keys(), 12, "subject-a")
        with pytest.raises(SubjectKeyErased):
            date_shift("2024-01-02", "subject-a", svc.secret_keys())
        assert pseudonym("John Smith", svc.secret_keys(), 12, "subject-b") != a1
    assert shift_a != "2024-01-02"
    erased = {k["key_id"] for k in service.list_keys() if k["state"] == "erased"}
    assert erased == {key_id, "p:" + key_id[2:]}
    assert p_a == "p:" + key_id[2:] and wrapped not in Path(config.store).read_bytes()
    # A key file keeps today's behaviour: one key for every subject.
    file_keys = FileKeys(write_key_file(tmp_path / "p.key"))
    assert (
        pseudonym("John Smith", file_keys, 12, "subject-a")
        == pseudonym("John Smith", file_keys, 12, "subject-b")
        == pseudonym("John Smith", file_keys)
    )
