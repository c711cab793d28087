"""VeilConfig validation, secret-free client configs and the runner check."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from veil.pipelines.options import LOCAL_RUNNER, ConfigError, VeilConfig, check_runner
from veil.transforms.kafkaio.client import resolve

PASSWORD = "hunter2-s3cret"


def config(*flags: str) -> VeilConfig:
    return VeilConfig.from_options(PipelineOptions(list(flags)))


def test_defaults(monkeypatch):
    monkeypatch.delenv("VEIL_BOOTSTRAP_SERVERS", raising=False)
    cfg = config()
    assert cfg.bootstrap_servers == "127.0.0.1:9092"
    assert cfg.input_topics == ("veil.raw",)
    assert cfg.topics.audit == "veil.audit"
    assert cfg.topics.sanitized("text") == "veil.sanitized.text"
    assert cfg.bounded is False
    assert cfg.policy_path is None
    assert cfg.client_config() == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "PLAINTEXT",
    }


def test_flags_are_parsed(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: x\n")
    cfg = config(
        "--veil_bootstrap_servers=a:1, b:2",
        "--veil_topic_prefix=p",
        "--veil_input_topics=in1, ,in2",
        "--veil_read_mode=bounded",
        f"--veil_policy={policy}",
        "--veil_max_payload_bytes=10",
    )
    assert cfg.bootstrap_servers == "a:1, b:2"
    assert cfg.input_topics == ("in1", "in2")
    assert cfg.topics.dead_letter == "p.dead-letter"
    assert cfg.bounded is True
    assert cfg.policy_path == str(policy)
    assert cfg.max_payload_bytes == 10


@pytest.mark.parametrize(
    "flag, flag_name",
    [
        ("--veil_bootstrap_servers=nohostport", "--veil_bootstrap_servers"),
        ("--veil_bootstrap_servers=", "--veil_bootstrap_servers"),
        ("--veil_bootstrap_servers=a:1,b", "--veil_bootstrap_servers"),
        ("--veil_input_topics= , ", "--veil_input_topics"),
        ("--veil_max_payload_bytes=-1", "--veil_max_payload_bytes"),
        ("--veil_max_payload_bytes=0", "--veil_max_payload_bytes"),
        ("--veil_step_time_limit_s=-0.5", "--veil_step_time_limit_s"),
        ("--veil_step_time_limit_s=0", "--veil_step_time_limit_s"),
        ("--veil_max_records_per_bundle=-3", "--veil_max_records_per_bundle"),
        ("--veil_idle_stop_s=-1", "--veil_idle_stop_s"),
        ("--veil_policy=/nonexistent/policy.yaml", "--veil_policy"),
    ],
    ids=[
        "bootstrap-no-port",
        "bootstrap-empty",
        "bootstrap-second-no-port",
        "no-input-topic",
        "payload-negative",
        "payload-zero",
        "time-limit-negative",
        "time-limit-zero",
        "bundle-negative",
        "idle-negative",
        "missing-policy",
    ],
)
def test_invalid_options_name_the_flag(flag, flag_name):
    with pytest.raises(ConfigError) as caught:
        config(flag)
    assert str(caught.value).startswith(flag_name)


@pytest.mark.parametrize("servers", ["a:x", "a:", ":9092"], ids=["port-x", "no-port", "no-host"])
def test_bootstrap_host_and_port_are_checked(servers):
    with pytest.raises(ConfigError, match="^--veil_bootstrap_servers"):
        config(f"--veil_bootstrap_servers={servers}")


def _sasl_config(monkeypatch) -> dict:
    monkeypatch.setenv("VEIL_TEST_SASL_PASSWORD", PASSWORD)
    return config(
        "--veil_bootstrap_servers=k1:9093,k2:9093",
        "--veil_security_protocol=SASL_SSL",
        "--veil_ssl_cafile=/etc/ca.pem",
        "--veil_sasl_mechanism=SCRAM-SHA-512",
        "--veil_sasl_username=veil",
        "--veil_sasl_password_env=VEIL_TEST_SASL_PASSWORD",
    ).client_config()


def test_client_config_names_the_password_env_never_the_value(monkeypatch):
    client = _sasl_config(monkeypatch)
    assert client == {
        "bootstrap_servers": ["k1:9093", "k2:9093"],
        "security_protocol": "SASL_SSL",
        "ssl_cafile": "/etc/ca.pem",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "veil",
        "sasl_password_env": "VEIL_TEST_SASL_PASSWORD",
    }
    assert PASSWORD not in repr(client)
    assert "sasl_plain_password" not in client


def test_resolve_reads_the_password_where_the_client_is_built(monkeypatch):
    client = _sasl_config(monkeypatch)
    resolved = resolve(client)
    assert resolved["sasl_plain_password"] == PASSWORD
    assert "sasl_password_env" not in resolved
    assert "sasl_password_env" in client, "resolve must not mutate its input"
    assert PASSWORD not in repr(client)


@pytest.mark.parametrize(
    "config_in, expected",
    [
        ({"bootstrap_servers": ["a:1"]}, {"bootstrap_servers": ["a:1"]}),
        ({"bootstrap_servers": ["a:1"], "sasl_password_env": None}, {"bootstrap_servers": ["a:1"]}),
    ],
    ids=["no-sasl", "env-name-none"],
)
def test_resolve_without_password_env(config_in, expected):
    assert resolve(config_in) == expected


def test_client_config_without_sasl_has_no_password_keys():
    client = config(
        "--veil_bootstrap_servers=k:1", "--veil_security_protocol=SSL", "--veil_ssl_cafile=/ca.pem"
    ).client_config()
    assert client == {
        "bootstrap_servers": ["k:1"],
        "security_protocol": "SSL",
        "ssl_cafile": "/ca.pem",
    }


@pytest.mark.parametrize(
    "flags",
    [
        ["--runner=DirectRunner"],
        ["--runner=SwitchingDirectRunner"],
        ["--runner=TestDirectRunner"],
        ["--runner=PrismRunner"],
        ["--runner=apache_beam.runners.direct.direct_runner.DirectRunner"],
    ],
    ids=["direct", "switching", "test-direct", "prism-no-location", "direct-dotted"],
)
def test_check_runner_refuses_downloading_runners(flags):
    with pytest.raises(ConfigError, match="Prism"):
        check_runner(PipelineOptions(flags))


@pytest.mark.parametrize(
    "flags, runner",
    [
        ([], LOCAL_RUNNER),
        ([f"--runner={LOCAL_RUNNER}"], LOCAL_RUNNER),
        (["--runner=PrismRunner", "--prism_location=/opt/prism"], "PrismRunner"),
        (["--runner=FlinkRunner"], "FlinkRunner"),
    ],
    ids=["default-local", "explicit-local", "prism-with-local-binary", "flink"],
)
def test_check_runner_accepts(flags, runner):
    options = PipelineOptions(flags)
    check_runner(options)
    assert options.view_as(StandardOptions).runner == runner


def test_resolve_refuses_a_missing_password_variable(monkeypatch):
    monkeypatch.delenv("VEIL_TEST_MISSING_PASSWORD", raising=False)
    with pytest.raises(KeyError, match="VEIL_TEST_MISSING_PASSWORD"):
        resolve({"bootstrap_servers": ["a:1"], "sasl_password_env": "VEIL_TEST_MISSING_PASSWORD"})


# --- every setting from the environment; unknown flags (issue 19) -----------------------


def test_every_veil_setting_reads_its_environment_variable_and_the_flag_wins(monkeypatch):
    monkeypatch.setenv("VEIL_TOPIC_PREFIX", "envp")
    monkeypatch.setenv("VEIL_READ_MODE", "bounded")
    monkeypatch.setenv("VEIL_STEP_TIME_LIMIT_S", "2.5")
    monkeypatch.setenv("VEIL_AUDIT_REQUIRE_KEY", "true")
    monkeypatch.setenv("VEIL_AUDIO_KEY_FILE", "/etc/veil/voice.key")
    cfg = config()
    assert (cfg.topics.raw, cfg.bounded, cfg.step_time_limit_s) == ("envp.raw", True, 2.5)
    assert cfg.audit_require_key is True and cfg.audio_key_file == "/etc/veil/voice.key"
    cfg = config("--veil_topic_prefix=flag", "--veil_read_mode=unbounded")
    assert (cfg.topics.raw, cfg.bounded) == ("flag.raw", False)


def test_every_veil_flag_has_an_environment_variable():
    import argparse

    from veil.pipelines.options import VeilOptions, env_name

    parser = argparse.ArgumentParser()
    VeilOptions._add_argparse_args(parser)
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(flags) > 25
    for action in flags:
        assert f"${env_name(action.option_strings[0])}" in action.help, action.dest


def test_a_bad_value_from_the_environment_names_flag_and_variable(monkeypatch):
    monkeypatch.setenv("VEIL_DELIVERY", "twice")
    with pytest.raises(ConfigError, match=r"--veil_delivery \(or \$VEIL_DELIVERY\) 'twice'"):
        config()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--veil_audit_requre_key"], "did you mean --veil_audit_require_key?"),
        (["--veil-idle-stop-s=3"], "did you mean --veil_idle_stop_s?"),
        (["--bogus-flag"], "unknown flag --bogus-flag"),
        (["--runer=FlinkRunner"], "did you mean --runner?"),
        (["--runner=FlinkRunner", "--veil_polcy=p.yaml"], "did you mean --veil_policy?"),
    ],
)
def test_unknown_flags_are_refused_with_the_nearest_valid_one(argv, message):
    from veil.pipelines.options import check_flags

    with pytest.raises(ConfigError) as caught:
        check_flags(argv)
    assert message in str(caught.value)


def test_job_server_runners_get_their_own_flags_through():
    from veil.pipelines.options import check_flags

    assert check_flags(["--runner=FlinkRunner", "--checkpointing_interval=5000"]) == [
        "--checkpointing_interval"
    ]
    assert check_flags(["--veil_read_mode=bounded", "--job_name=x"]) == []


def test_erasure_listener_can_be_turned_off(tmp_path):
    store = [f"--veil_key_store={tmp_path / 'k.db'}", f"--veil_keyring={tmp_path / 'r.json'}"]
    assert config(*store).key_service.erasure_topic == "veil.erasure"
    assert config(*store, "--veil_erasure_listener=off").key_service.erasure_topic is None


def test_key_store_takes_the_whole_key_service_as_one_uri(tmp_path):
    """``--veil_key_store kms:...`` is the --veil_kms/--veil_keyring/... flags in one URI."""
    db, ring = tmp_path / "k.db", tmp_path / "r.json"
    spelled = config(f"--veil_key_store={db}", f"--veil_keyring={ring}").key_service
    uri = config(f"--veil_key_store=kms:local?store={db}&keyring={ring}").key_service
    assert uri == spelled
    hsm = config(
        "--veil_key_store=pkcs11:token=veil?module-path=/usr/lib/x.so"
        f"&pin-source=env:MY_PIN&store={db}",
        "--veil_key_cache_ttl_s=5",
    ).key_service
    assert (hsm.backend, hsm.pkcs11_token, hsm.pkcs11_pin_env, hsm.cache_ttl_s) == (
        "pkcs11",
        "veil",
        "MY_PIN",
        5.0,
    )
    assert hsm.erasure_topic == "veil.erasure" and hsm.bootstrap == "127.0.0.1:9092"


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--veil_key_store", "kms:local?keyring=/r.json", "--veil_key_store: kms: "),
        ("--veil_key_store", "pkcs11:token=t", "--veil_key_store: pkcs11: needs token"),
        ("--veil_audit_key", "s3:bucket/k", "--veil_audit_key: unknown key URI scheme 's3:'"),
        ("--veil_record_id_key", "env:", "--veil_record_id_key: an env: key URI needs"),
        ("--veil_audio_key_file", "vault:x", "--veil_audio_key_file: unknown key URI scheme"),
    ],
)
def test_key_flags_take_key_uris_and_name_a_bad_one(flag, value, message):
    with pytest.raises(ConfigError) as caught:
        config(f"{flag}={value}")
    assert str(caught.value).startswith(message)


def test_key_flags_accept_every_scheme_and_the_old_path_form(tmp_path):
    for value in (str(tmp_path / "a.key"), f"file:{tmp_path}/a.key", "env:MY_AUDIT_KEY",
                  f"kms:local?store={tmp_path}/k.db&keyring={tmp_path}/r.json"):  # fmt: skip
        assert config(f"--veil_audit_key={value}").audit_key == value
