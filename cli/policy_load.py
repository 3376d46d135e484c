"""Loading a policy file for the ``corral policy`` tools, the way the broker loads it."""

from __future__ import annotations

import argparse
from pathlib import Path

from broker.errors import CorralError
from broker.policy import PolicySource
from broker.settings import load_settings
from policies import PolicyLoadError
from policies.casbin_backend import DEFAULT_MODEL
from policies.engine import RuleEngine

__all__ = ["load_reference", "policy_options", "source_for"]


def source_for(file: Path, model: Path | None = None, backend: str | None = None) -> PolicySource:
    """The backend from ``--backend``, else from the name: ``.csv`` is Casbin."""
    kind = backend or ("casbin" if file.suffix == ".csv" or model is not None else "polar")
    if kind == "casbin":
        return PolicySource("casbin", file, model or DEFAULT_MODEL)
    return PolicySource("polar", file)


def load_reference(args: argparse.Namespace, file: Path | None) -> RuleEngine:
    """The reference engine for ``file`` (``None``: the broker's configured policy, with
    its backend and model); a load error ends the command with its ``file:line``."""
    source = (
        PolicySource.from_settings(load_settings())
        if file is None
        else source_for(file, args.model, args.backend)
    )
    try:
        return source.load()
    except PolicyLoadError as exc:
        raise CorralError(str(exc)) from None


def policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=("polar", "casbin"),
        default=None,
        help="default: casbin for .csv files, else polar",
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="the Casbin model (default: the shipped one)"
    )
