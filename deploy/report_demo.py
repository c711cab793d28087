"""The report demo: sample records of every modality through ``veil sanitize --report``.

    python deploy/report_demo.py --out DIR [--show-originals] [--screenshots DIR]

Samples: the packaged demo texts, a JSON record, a photograph (skimage's astronaut, from
the image set-up), the "Carphone" clip (the video set-up), a sentence with spoken PII
from espeak-ng, and three bad records (an empty payload, a cut-off PNG, a text that is
not UTF-8) so the dead-letter section has something to show. The audio branch gets a
voice key made for the run. ``--screenshots`` renders the report in headless Chromium
and writes ``report-overview.png`` and ``report-gallery.jpg`` (the docs' screenshots).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPOKEN = (
    "my name is john smith and my phone number is two one two five five five zero one seven five"
)


def cache() -> Path:
    return Path(os.environ.get("VEIL_CACHE") or REPO / ".cache")


def make_samples(into: Path) -> list[Path]:
    """Writes the sample inputs into ``into``; returns them in order."""
    into.mkdir(parents=True, exist_ok=True)
    photo = cache() / "testdata" / "image" / "astronaut.png"
    clip = cache() / "testdata" / "video" / "carphone_pristine.mp4"
    for needed, target in ((photo, "make image-setup"), (clip, "make video-setup")):
        if not needed.is_file():
            raise SystemExit(f"{needed} missing: run `{target}`")
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng missing: run `make audio-testdata`")
    texts = into / "texts.jsonl"
    shutil.copy(REPO / "pipelines" / "data" / "demo-records.jsonl", texts)
    record = {
        "patient": {
            "name": "Robert Johnson",
            "email": "rj@example.org",
            "dob": "1957-03-14",
            "zip": "02139",
        },
        "visit": {"reason": "follow-up for type 2 diabetes", "clinic": "Cambridge"},
    }
    lines = [
        {
            "record_id": "demo-json-1",
            "subject_key": "patient-77",
            "content_type": "application/json",
            "payload": json.dumps(record),
        },
        {
            "record_id": "demo-bad-empty",
            "subject_key": "customer-9",
            "content_type": "text/plain",
            "payload": "",
        },
        {
            "record_id": "demo-bad-latin1",
            "subject_key": "customer-9",
            "content_type": "text/plain",
            "payload_base64": base64.b64encode("caf\xe9 au lait".encode("latin-1")).decode(),
        },
    ]
    (into / "records.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    shutil.copy(photo, into / "photo.png")
    (into / "cut-off.png").write_bytes(photo.read_bytes()[:4096])
    shutil.copy(clip, into / "clip.mp4")
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "en-us+f2",
            "-s",
            "150",
            "-g",
            "8",
            "-w",
            str(into / "call.wav"),
            SPOKEN,
        ],
        check=True,
        capture_output=True,
    )
    return [
        texts,
        into / "records.jsonl",
        into / "photo.png",
        into / "cut-off.png",
        into / "clip.mp4",
        into / "call.wav",
    ]


def voice_key(where: Path) -> Path:
    key = where / "voice.key"
    if not key.exists():
        key.write_text(secrets.token_hex(32))
        key.chmod(0o600)
    return key


def run(
    out: Path, show_originals: bool = False, env: dict | None = None
) -> subprocess.CompletedProcess:
    inputs = make_samples(out / "inputs")
    env = dict(os.environ if env is None else env)
    env.setdefault("VEIL_AUDIO_KEY_FILE", str(voice_key(out)))
    argv = [
        sys.executable,
        "-m",
        "veil.pipelines.cli",
        "sanitize",
        *map(str, inputs),
        "--out",
        str(out / "sanitized"),
        "--report",
        "--allow-dead-letters",  # the samples include bad records on purpose
    ]
    if show_originals:
        argv.append("--show-originals")
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)


def screenshots(report: Path, into: Path) -> None:
    from PIL import Image

    from veil.pipelines.report.browser import capture

    full = into / "report-full.png"
    shot = capture(report, full)
    if shot.errors:
        raise SystemExit(f"browser errors: {shot.errors}")
    image = Image.open(full)
    gallery_top = shot.tops.get("gallery", image.height)
    image.crop((0, 0, image.width, min(gallery_top, 2400))).save(
        into / "report-overview.png", optimize=True
    )
    if "gallery" in shot.tops:
        image.crop(
            (0, gallery_top - 12, image.width, min(image.height, gallery_top + 2600))
        ).convert("RGB").save(into / "report-gallery.jpg", quality=82, optimize=True)
    full.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--show-originals", action="store_true")
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args()
    done = run(args.out, args.show_originals)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode:
        return done.returncode
    if args.screenshots:
        screenshots(args.out / "sanitized" / "report.html", args.screenshots)
        print(f"screenshots in {args.screenshots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
