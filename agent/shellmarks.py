"""Shell integration for interactive bash: OSC 133 marks that tell the broker where the
prompt ends.

The broker rebuilds the command line a person is about to run from the terminal's echo;
it needs to know where the prompt stops and the edit line starts, and whether the shell
is at a prompt at all (rather than running vim). bash says so itself: ``PROMPT_COMMAND``
prints ``ESC ] 133 ; A BEL`` (prompt start) before each primary prompt and makes sure
``PS1`` and ``PS2`` end with ``ESC ] 133 ; B BEL`` (prompt end), re-appending it when
``~/.bashrc`` or the person rewrites them. The hook is exported as a function in the
environment (``BASH_FUNC_...%%``) so nested bash shells keep it, and it makes
``PROMPT_COMMAND`` and itself read-only on first run so ``unset PROMPT_COMMAND`` fails.

Return and the other keys that run a line (Ctrl-J, Ctrl-O, Ctrl-X Ctrl-E, vi ``v``) are
rebound to ``abort`` before every prompt; only ``Ctrl-X Return``, which the broker sends
after a decision and strips from what people type, accepts a line. A Return that reaches
bash while the broker still believes a program has the terminal (the output carrying the
prompt is still on its way) therefore runs nothing. ``bind -x`` key bindings (which run
shell code without an Enter) are removed at each prompt. The hook also discards complete
lines typed ahead while a command ran; partial type-ahead stays in the edit line and is
decided at its Enter like anything typed.

This is defence in depth, not a sandbox: ``sh``, ``env -u PROMPT_COMMAND bash`` or a
``~/.bashrc`` that replaces ``PROMPT_COMMAND`` ends the marks, and the broker then treats
the terminal as running a program (see docs/policy.md, "Limits"). This module must stay
stdlib-only and must never put anything but these two variables into the environment.
"""

from __future__ import annotations

import os

__all__ = [
    "ACCEPT",
    "HOOK_NAME",
    "PROMPT_END",
    "PROMPT_START",
    "SHELL_MARKS_ENV",
    "shell_integration",
]

#: In a terminal ``open_channel``'s ``env``: "1" asks for the marks (read as a flag only).
SHELL_MARKS_ENV = "CORRAL_SHELL_MARKS"

HOOK_NAME = "__corral_prompt"
PROMPT_START = b"\x1b]133;A\x07"
PROMPT_END = b"\x1b]133;B\x07"

_MARK = r"'\[\e]133;B\a\]'"
#: What makes readline run the line: only the broker sends it (it strips it from input).
ACCEPT = b"\x18\r"
# Run before every prompt: cheap builtins only, plus one ``bind -X`` listing.
_HOOK = (
    "() { local __s=$? __n=0 __l __k\n"
    " while (( __n < 1000 )) && read -r -t 0 2>/dev/null; do"
    " IFS= read -r -s -t 0.05 __l || break; __n=$((__n+1)); done\n"
    " (( __n )) && printf 'corral: %d line(s) typed while a command ran were discarded"
    ' (not inspected)\\n\' "$__n"\n'
    f" case $PS1 in *{_MARK}) ;; *) PS1=${{PS1//{_MARK}/}}{_MARK} ;; esac\n"
    f" case $PS2 in *{_MARK}) ;; *) PS2=${{PS2//{_MARK}/}}{_MARK} ;; esac\n"
    " for __k in emacs vi-insert vi-command; do\n"
    "  bind -m $__k '\"\\C-m\": abort' '\"\\C-j\": abort' '\"\\C-x\\C-m\": accept-line'"
    " 2>/dev/null\n"
    " done\n"
    " bind -m emacs '\"\\C-o\": abort' '\"\\C-x\\C-e\": abort' 2>/dev/null\n"
    " bind -m vi-command '\"v\": abort' 2>/dev/null\n"
    ' while IFS= read -r __l; do __l=${__l%%\\": *}; bind -r "${__l#\\"}";'
    " done < <(bind -X 2>/dev/null)\n"
    " printf '\\e]133;A\\a'\n"
    f" readonly PROMPT_COMMAND 2>/dev/null; readonly -f {HOOK_NAME} 2>/dev/null\n"
    " return $__s\n"
    "}"
)


def shell_integration(shell: str) -> dict[str, str]:
    """The environment that turns on the marks for ``shell`` (empty if it is not bash)."""
    if os.path.basename(shell) != "bash":
        return {}
    return {"PROMPT_COMMAND": HOOK_NAME, f"BASH_FUNC_{HOOK_NAME}%%": _HOOK}
