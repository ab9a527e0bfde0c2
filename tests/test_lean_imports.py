"""A default worker loads no machine-learning stack it does not use (issue 16): no torch, transformers,
scikit-learn or pandas for the default policy, no chDB when ClickHouse is a server. Checked in a fresh
process, since the test process itself has imported everything."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from proxy.upstreams.fake import FakeUpstream
from tests.support import ROOT

# Each of these costs a worker 20 to 300 MB, and none serves the default policy.
HEAVY = ("torch", "transformers", "sklearn", "scipy", "pandas", "pyarrow", "chdb", "onnxruntime", "detoxify")

_WORKER = """
import json, sys
from pathlib import Path
import httpx
from tests.support import LiveWarden, make_settings
live = LiveWarden(make_settings(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
key = live.create_key()
body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "mail me at ann@example.com"}]}
auth = {"Authorization": "Bearer " + key}
answer = httpx.post(live.base_url + "/chat/completions", json=body, headers=auth)
row = live.row_for(answer.headers["x-warden-request-id"])
live.stop()
findings = list(row["finding_kind"])
print(json.dumps({"status": answer.status_code, "findings": findings, "modules": sorted(sys.modules)}))
"""


def test_a_default_worker_loads_no_heavy_stack(
    tmp_path: Path, fake_upstream: FakeUpstream, clickhouse_http: str
) -> None:
    clickhouse = f"{clickhouse_http}/lean_{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-c", _WORKER, str(tmp_path), fake_upstream.base_url, clickhouse],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["status"] == 200
    loaded = {name.split(".")[0] for name in report["modules"]}
    # The default policy still ran: presidio was loaded and did its work.
    assert "presidio_analyzer" in loaded and "presidio_anonymizer" in loaded
    assert report["findings"] == ["EMAIL_ADDRESS"]
    assert sorted(loaded & set(HEAVY)) == []
