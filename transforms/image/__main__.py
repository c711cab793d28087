"""``python -m veil.transforms.image fetch|verify``: the face model's set-up step."""

import sys

from veil.transforms.media.models import main

sys.exit(main())
