"""Inline enforcement in live terminals: every line is decided at its Enter.

Data flow: agent output -> :class:`LineTracker` (OSC 133 prompt marks, bounded bytes since
the prompt) ; client keystrokes -> :class:`CommandGate` (forward now, or hold the Enter) ->
the line read off the screen with ``pyte`` -> :class:`Verdicts` (policy, step-up MFA,
approvals) -> forward the Enter or Ctrl-C. Interactive filtering is defence in depth; the
limits are in docs/policy.md. Nothing here may block the output path.
"""

from broker.enforce.approvals import ApprovalDesk, ApprovalRequest, ApprovalWaiter
from broker.enforce.gate import CommandGate, Verdicts
from broker.enforce.tracker import SHELL_MARKS_ENV, InputStep, LineTracker, State
from broker.enforce.verdicts import BrokerVerdicts, NoStepUp, StepUp
from broker.enforce.wiring import COMMAND_ACTION, gate_for

__all__ = [
    "COMMAND_ACTION",
    "SHELL_MARKS_ENV",
    "ApprovalDesk",
    "ApprovalRequest",
    "ApprovalWaiter",
    "BrokerVerdicts",
    "CommandGate",
    "InputStep",
    "LineTracker",
    "NoStepUp",
    "State",
    "StepUp",
    "Verdicts",
    "gate_for",
]
