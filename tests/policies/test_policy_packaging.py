"""The default policy ships inside the package, and it is the repository's policies.polar."""

from __future__ import annotations

from pathlib import Path

from broker.settings import load_settings
from policies.polar_backend import DEFAULT_POLICY

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_default_is_the_root_policy() -> None:
    # The root file is the one people read and edit; the package copy is what a
    # non-editable install loads. After editing the root file: cp policies.polar
    # policies/default.polar
    assert DEFAULT_POLICY.parent.name == "policies"
    assert DEFAULT_POLICY.read_bytes() == (ROOT / "policies.polar").read_bytes()


def test_default_settings_point_at_the_packaged_policy(tmp_path: Path) -> None:
    settings = load_settings({}, cwd=tmp_path)
    assert settings.effective_policy_file == DEFAULT_POLICY
    casbin = load_settings({"CORRAL_POLICY_BACKEND": "casbin"}, cwd=tmp_path)
    assert casbin.effective_policy_file.name == "default_casbin_policy.csv"
    assert casbin.effective_casbin_model_file.name == "default_casbin_model.conf"
