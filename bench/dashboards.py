"""Dashboard speed: every page (JSON query time and full HTML render) at 10^6 and 10^7 rows.

Synthetic rows (analytics/synthetic.py: 4 teams, 4 models, 40 keys, a drift injected halfway) are
generated inside in-process chDB over 30 days and merged (OPTIMIZE FINAL); each page is requested
three times through the app with a 30-day window (the drift page compares the last 15 days with the
15 before) and the median is reported. Target: every page under 1 s at 10^7 rows.

    python bench/dashboards.py [--sizes 1000000 10000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from analytics.synthetic import generate  # noqa: E402
from app import create_app  # noqa: E402
from proxy.compliance.crypto import new_kek_text  # noqa: E402
from proxy.migrate import upgrade_all  # noqa: E402
from proxy.settings import load_settings  # noqa: E402

PAGES = ("overview", "latency", "cost", "drift", "behaviour", "audit")
TOKEN = "bench-admin-token-0123456789abcdef"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="warden-dash-"))
    (work / "kek").write_text(new_kek_text())
    config = work / "warden.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": {
                    "database_url": f"sqlite:///{work / 'w.db'}",
                    "clickhouse_url": f"chdb:///{work / 'ch'}",
                },
                "analytics": {"spool_dir": str(work / "spool")},
                "crypto": {"kek": f"file:{work / 'kek'}"},
                "auth": {"admin_token": TOKEN},
            }
        )
    )
    settings = load_settings(config, environ={})
    upgrade_all(settings.storage.database_url, settings.storage.clickhouse_url)
    app = create_app(settings)
    client = app.test_client()
    services = app.extensions["warden"]
    until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    since = until - timedelta(days=30)
    window = {"since": since.isoformat(), "until": until.isoformat()}
    drift_window = {
        "since": (until - timedelta(days=15)).isoformat(),
        "until": until.isoformat(),
        "baseline_since": since.isoformat(),
        "baseline_until": (until - timedelta(days=15)).isoformat(),
    }
    headers = {"authorization": f"Bearer {TOKEN}"}
    results = []
    have = 0
    for size in sorted(args.sizes):
        started = time.perf_counter()
        generate(services.clickhouse(), size - have, since, until, seed=size)
        # Measure a table at rest: right after a bulk insert, background merges compete for the CPUs.
        for table in ("requests", "requests_hourly", "requests_hourly_team"):
            services.clickhouse().command(f"OPTIMIZE TABLE {table} FINAL")
        made = time.perf_counter() - started
        have = size
        for page in PAGES:
            params = drift_window if page == "drift" else window
            timings = {}
            for kind, path in (("json", f"/dashboards/{page}.json"), ("html", f"/dashboards/{page}")):
                samples = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    response = client.get(path, query_string=params, headers=headers)
                    samples.append(time.perf_counter() - t0)
                    assert response.status_code == 200, (page, response.get_data(as_text=True)[:300])
                timings[kind] = statistics.median(samples)
            results.append((size, page, timings["json"], timings["html"], made))
    services.close()
    print(
        f"# Warden dashboards — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load avg {os.getloadavg()[0]:.2f}; "
        "in-process chDB, 30-day window"
    )
    print("\n| rows | page | query + JSON (median of 3) | full HTML page (median of 3) | under 1 s |")
    print("|---|---|---|---|---|")
    for size, page, json_s, html_s, _ in results:
        print(
            f"| {size:,} | {page} | {json_s * 1000:.0f} ms | {html_s * 1000:.0f} ms | "
            f"{'yes' if max(json_s, html_s) < 1 else 'NO'} |"
        )
    sizes = sorted({r[0] for r in results})
    for size in sizes:
        made = next(r[4] for r in results if r[0] == size)
        print(f"\ngenerating up to {size:,} rows took {made:.1f} s")


if __name__ == "__main__":
    main()
