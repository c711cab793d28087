"""`veil keys` takes the key service as one key URI, like `veil run --veil_key_store`."""

from __future__ import annotations

from veil.pipelines.cli import main


def test_keys_commands_take_a_kms_uri(tmp_path, capsys, monkeypatch):
    from veil.transforms.crypto import LocalKeyring

    monkeypatch.setenv("VEIL_TEST_CLI_MASTER", "33" * 32)
    ring, db = tmp_path / "keyring.json", tmp_path / "keys.db"
    LocalKeyring.create(ring, "VEIL_TEST_CLI_MASTER")
    uri = f"kms:local?store={db}&keyring={ring}&master_key_env=VEIL_TEST_CLI_MASTER"
    assert main(["keys", "list", "--veil_key_store", uri]) == 0
    by_uri = capsys.readouterr().out
    spelled = ["--store", str(db), "--keyring", str(ring), "--master-key-env",
               "VEIL_TEST_CLI_MASTER"]  # fmt: skip
    assert main(["keys", "list", *spelled]) == 0
    assert capsys.readouterr().out == by_uri
    assert db.exists()
    assert main(["keys", "list", "--veil_key_store", "kms:local?keyring=x"]) == 2
    err = capsys.readouterr().err
    assert "--veil_key_store: kms: a key-service URI needs store=PATH" in err
