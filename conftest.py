"""Root pytest configuration: notebooks collected here run at the 'smoke' profile."""

import os

os.environ.setdefault("HIPCORE_PROFILE", "smoke")
