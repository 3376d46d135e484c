"""Make ``import websh`` mean the package, not this test folder.

tests/conftest.py puts tests/ on sys.path (pytest "prepend" import mode), which makes
tests/websh look like a namespace package called ``websh``. A regular package anywhere on
sys.path wins over a namespace portion, so put the checkout root there too, and drop a
namespace ``websh`` that an earlier import may already have cached.
(``pythonpath = ["."]`` in the pytest config would make this file unnecessary.)
"""

from __future__ import annotations

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
if getattr(sys.modules.get("websh"), "__file__", "") is None:
    for _name in [name for name in sys.modules if name == "websh" or name.startswith("websh.")]:
        del sys.modules[_name]
