"""``python -m rlm_tui`` is the ``rlm-tui`` command."""

import sys

from .cli import entry

sys.exit(entry())
