"""Analytics: exchange events, the ClickHouse sink and schema. Imports nothing from proxy or dashboards."""
