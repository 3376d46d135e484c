"""``python -m agent``: the same as the ``corral-agent`` command."""

from __future__ import annotations

import sys

from agent.main import main

sys.exit(main())
