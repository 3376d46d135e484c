"""What checking one SAML response costs the broker: ``SamlSp.verify`` on a real response
from pysaml2 (RSA-2048, SHA-256, assertion signed), measured with pytest-benchmark.

``verify`` is the whole protocol check of the ACS (base64, safe XML parse, schema
validation, signature, conditions, clock window, attributes) without the database work that
follows (two replay-store inserts and the sign-in). It is stateless, so the same response
can be verified round after round. Run with

    .venv/bin/pytest benchmarks/test_saml_verify.py -p no:cacheprovider -s

(not part of the test suite: ``testpaths`` is ``tests``).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

from broker.store.models import SsoProtocol, SsoProvider
from idp.saml import SamlSp
from tests.idp.saml_idp import SamlIdp, encode

ROUNDS = 300


def test_verify_one_signed_response(benchmark: Any, tmp_path: Path) -> None:
    idp = SamlIdp(tmp_path)
    provider = SsoProvider(
        workspace_id="ws",
        name="bench",
        protocol=SsoProtocol.SAML,
        config={"idp_metadata_xml": idp.metadata()},
    )
    sp = SamlSp(provider, "https://corral.test")
    idp.trust(sp.metadata())
    url, request_id = sp.authn_request("relay")
    xml, _ = idp.response_xml(url)
    posted = encode(xml)

    identity = benchmark.pedantic(sp.verify, args=(posted, request_id), rounds=ROUNDS)
    assert identity.email == "grace@example.test"
    data = sorted(benchmark.stats.stats.data)
    p99 = statistics.quantiles(data, n=100, method="inclusive")[98] * 1e3
    median = statistics.median(data) * 1e3
    benchmark.extra_info.update({"median_ms": round(median, 2), "p99_ms": round(p99, 2)})
    print(f"\nSAML verify: median {median:.2f} ms, p99 {p99:.2f} ms ({len(xml)} bytes of XML)")
