#!/usr/bin/env python3
"""The OQL model of spec/scoring.md written in SQL on DuckDB: the tool a data team would
reach for instead of oql-sync. The scale benchmark (benches/scale.rs) runs it on the
same NDJSON it imports and checks that both agree on every company's score and counts.

    python3 benches/duckdb_reference.py ACTIVITIES.ndjson AS_OF OUT.csv

Writes one row per company (attributed activities dated on or before AS_OF):
domain, score_micro (the exact 90-day score in millionths of a point), and the raw
counts views/usage/events over the last 30, 60 and 90 days, downloads/community/
telemetry over the last 30 days. Prints the seconds DuckDB took (reading the NDJSON
included) as `duckdb_seconds=…`.

Awards need no row-by-row walk: every activity of a bucket (company, category, tier)
is worth the same points, so a day's award is min(n × points, day cap, month room),
and the month's running award is min(running sum of day awards, month cap) — the
walk of the spec, summed per day (see src/scoring/points.rs for the walk itself).

Attribution here is rule 1 only (the activity's `company_domain`, lower-cased), which
is all the benchmark generator (`oql-sync generate`) emits; default model only.
"""

import sys
import time

import duckdb

POINTS = [
    # category, tier, points, day cap, month cap (spec/scoring.md, in micro-points)
    ("views", "low", 0.25, 2, 10),
    ("views", "medium", 0.5, 3, 20),
    ("views", "high", 1, 5, 30),
    ("downloads", "low", 2, 6, 30),
    ("downloads", "medium", 5, 10, 50),
    ("downloads", "high", 8, 16, 42),
    ("community", "low", 2, 2, 10),
    ("community", "medium", 5, 10, 50),
    ("community", "high", 8, 24, 48),
    ("telemetry", "low", 2, 6, 30),
    ("telemetry", "medium", 5, 10, 50),
    ("telemetry", "high", 8, 16, 42),
]

QUERY = """
WITH raw AS (
    SELECT * FROM read_json(?, format = 'newline_delimited', columns = {
        source: 'VARCHAR', id: 'VARCHAR', kind: 'VARCHAR', action: 'VARCHAR',
        occurred_at: 'TIMESTAMPTZ', tier: 'VARCHAR', company_domain: 'VARCHAR',
        package: 'VARCHAR', version: 'VARCHAR', url: 'VARCHAR'})
),
acts AS (
    SELECT
        lower(company_domain) AS domain,
        kind,
        CAST(timezone('UTC', occurred_at) AS DATE) AS day,
        CASE WHEN kind IN ('page_view', 'doc_view') THEN 'views'
             WHEN kind = 'download' THEN 'downloads'
             WHEN kind = 'community' THEN 'community'
             ELSE 'telemetry' END AS category,
        -- the lower-cased path of a full URL or a bare path, without query or fragment
        CASE WHEN url IS NULL THEN NULL ELSE
            regexp_replace(regexp_replace(regexp_replace(lower(trim(url)),
                '^([a-z][a-z0-9+.-]*:)?//[^/?#]*', ''), '[?#].*$', ''), '^([^/]|$)', '/\\1')
        END AS path,
        tier, action, package, version
    FROM raw
    WHERE company_domain IS NOT NULL AND company_domain <> ''
      AND CAST(timezone('UTC', occurred_at) AS DATE) <= CAST(? AS DATE)
),
tiered AS (
    SELECT domain, kind, day, category,
        coalesce(tier, CASE category
            WHEN 'views' THEN CASE
                WHEN path IS NOT NULL AND regexp_matches(path, '^/(pricing|signup|enterprise|contact)(/|$)') THEN 'high'
                WHEN path = '/' OR starts_with(coalesce(path, ''), '/docs') OR kind = 'doc_view' THEN 'medium'
                ELSE 'low' END
            WHEN 'downloads' THEN CASE
                WHEN contains(lower(coalesce(package, '')), 'enterprise')
                  OR contains(lower(coalesce(version, '')), 'enterprise') THEN 'high'
                WHEN version IS NULL OR lower(trim(version)) IN ('', 'latest', 'nightly', 'edge', 'main') THEN 'low'
                ELSE 'medium' END
            WHEN 'community' THEN CASE
                WHEN action IN ('fork', 'issue_opened', 'discussion_opened', 'slack_join') THEN 'medium'
                WHEN action = 'pr_opened' THEN 'high'
                ELSE 'low' END
            ELSE 'medium' END) AS tier
    FROM acts
),
daily AS (
    SELECT t.domain, t.category, t.tier, t.day,
        least(count(*) * any_value(p.points), any_value(p.day_cap)) AS day_award,
        any_value(p.month_cap) AS month_cap
    FROM tiered t JOIN points p USING (category, tier)
    GROUP BY ALL
),
monthly AS (
    SELECT domain, category, tier, day,
        least(sum(day_award) OVER w, month_cap) AS running
    FROM daily
    WINDOW w AS (PARTITION BY domain, category, tier, date_trunc('month', day)
                 ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
awards AS (
    SELECT domain, day, running - coalesce(lag(running) OVER w, 0) AS award
    FROM monthly
    WINDOW w AS (PARTITION BY domain, category, tier, date_trunc('month', day) ORDER BY day)
),
scores AS (
    SELECT domain, sum(award) FILTER (WHERE day > CAST(? AS DATE) - 90) AS score_micro
    FROM awards GROUP BY domain
),
counts AS (
    SELECT domain,
        count(*) FILTER (WHERE kind IN ('page_view', 'doc_view') AND day > CAST(? AS DATE) - 30) AS views_30,
        count(*) FILTER (WHERE kind IN ('page_view', 'doc_view') AND day > CAST(? AS DATE) - 60) AS views_60,
        count(*) FILTER (WHERE kind IN ('page_view', 'doc_view') AND day > CAST(? AS DATE) - 90) AS views_90,
        count(*) FILTER (WHERE kind IN ('download', 'telemetry') AND day > CAST(? AS DATE) - 30) AS usage_30,
        count(*) FILTER (WHERE kind IN ('download', 'telemetry') AND day > CAST(? AS DATE) - 60) AS usage_60,
        count(*) FILTER (WHERE kind IN ('download', 'telemetry') AND day > CAST(? AS DATE) - 90) AS usage_90,
        count(*) FILTER (WHERE day > CAST(? AS DATE) - 30) AS events_30,
        count(*) FILTER (WHERE day > CAST(? AS DATE) - 60) AS events_60,
        count(*) FILTER (WHERE day > CAST(? AS DATE) - 90) AS events_90,
        count(*) FILTER (WHERE kind = 'download' AND day > CAST(? AS DATE) - 30) AS downloads_30,
        count(*) FILTER (WHERE kind = 'community' AND day > CAST(? AS DATE) - 30) AS community_30,
        count(*) FILTER (WHERE kind = 'telemetry' AND day > CAST(? AS DATE) - 30) AS telemetry_30
    FROM tiered GROUP BY domain
)
SELECT domain, coalesce(score_micro, 0) AS score_micro, views_30, views_60, views_90,
       usage_30, usage_60, usage_90, events_30, events_60, events_90,
       downloads_30, community_30, telemetry_30
FROM counts LEFT JOIN scores USING (domain)
ORDER BY domain
"""


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    path, as_of, out = sys.argv[1:]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE points AS SELECT * FROM (VALUES "
        + ", ".join(
            f"('{c}', '{t}', {int(p * 1_000_000)}::BIGINT, {d * 1_000_000}::BIGINT, {m * 1_000_000}::BIGINT)"
            for c, t, p, d, m in POINTS
        )
        + ") v(category, tier, points, day_cap, month_cap)"
    )
    started = time.monotonic()
    params = [path, as_of, as_of] + [as_of] * 12
    con.execute(f"COPY ({QUERY}) TO '{out}' (HEADER, DELIMITER ',')", params)
    print(f"duckdb_seconds={time.monotonic() - started:.3f}")


if __name__ == "__main__":
    main()
