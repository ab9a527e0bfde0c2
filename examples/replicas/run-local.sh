#!/bin/sh
# Two replicas of two workers on one machine, as tests/test_replicas.py runs them: PostgreSQL and Redis
# on their usual local ports, ClickHouse served from chDB by Warden itself. Stop with Ctrl-C.
set -eu
cd "$(dirname "$0")/../.."
cat > var/replicas.yaml <<YAML
storage:
  database_url: postgresql://postgres@127.0.0.1:5432/warden
  clickhouse_url: http://127.0.0.1:8123/warden
  clickhouse_password: file:var/clickhouse.password
  redis_url: redis://127.0.0.1:6379/0
upstreams:
  - {name: fake, type: openai, base_url: http://127.0.0.1:9000/v1, models: [gpt-fake]}
prices:
  gpt-fake: {input: 0.15, output: 0.6}
limits:
  - {scope: key, rpm: 60}
budgets:
  - {scope: team, period: day, hard_usd: 1}
YAML
warden fake-upstream --port 9000 & 
warden clickhouse-serve --path var/clickhouse --port 8123 &
sleep 3
warden migrate --config var/replicas.yaml
WARDEN_ANALYTICS__SPOOL_DIR=var/spool-a warden serve --config var/replicas.yaml --port 8001 --workers 2 &
WARDEN_ANALYTICS__SPOOL_DIR=var/spool-b warden serve --config var/replicas.yaml --port 8002 --workers 2 &
trap 'kill 0' INT TERM
wait
