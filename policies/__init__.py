"""Corral's decision layer: who may reach which server, and which commands may run.

Requests (:mod:`policies.model`) go to a :class:`PolicyEngine`: the Polar backend (oso,
``policies.polar``), the Casbin backend (pycasbin) or the compiled fast path built from
either. This package never touches the database, the network or the clock: the broker
passes everything a decision needs in the request.
"""

from policies.casbin_backend import load_casbin
from policies.commands import ParsedLine, SimpleCommand, parse_command_line
from policies.compiled import CompiledEngine, compile_engine
from policies.engine import PolicyEngine, RuleEngine
from policies.errors import CommandParseError, EngineError, PolicyError, PolicyLoadError
from policies.model import (
    AccessLevel,
    ActionRequest,
    CommandRequest,
    Decision,
    Effect,
    Request,
    Role,
    Server,
    SessionRequest,
    Subject,
)
from policies.polar_backend import load_polar
from policies.reload import PolicyHolder, ReloadResult

__all__ = [
    "AccessLevel",
    "ActionRequest",
    "CommandParseError",
    "CommandRequest",
    "CompiledEngine",
    "Decision",
    "Effect",
    "EngineError",
    "ParsedLine",
    "PolicyEngine",
    "PolicyError",
    "PolicyHolder",
    "PolicyLoadError",
    "ReloadResult",
    "Request",
    "Role",
    "RuleEngine",
    "Server",
    "SessionRequest",
    "SimpleCommand",
    "Subject",
    "compile_engine",
    "load_casbin",
    "load_polar",
    "parse_command_line",
]
