"""Deterministic example data for the quickstart: python3 generate.py (stdlib only)."""
import json, random
random.seed(42)
names = ["northwind-logistics.com","acme-analytics.io","bluefin-data.com","copperleaf.io","driftwood-labs.com","emberline.dev","fjordsoft.com","granite-ops.io"]
names += [f"{w}-{k}.com" for w in ["harbor","ion","juniper","kestrel","lumen","meridian","nimbus","orchid","pinnacle","quarry","redwood","summit","tidal","umber","vertex","willow","xylo","yonder","zephyr","atlas","beacon","cobalt","delta","echo","fable","glade","helix","iris"] for k in ["systems"]][:28]
out = []
def ts(day, h):  # day 0 = 2026-05-01
    import datetime
    d = datetime.datetime(2026,5,1,tzinfo=datetime.timezone.utc) + datetime.timedelta(days=day, hours=h, minutes=random.randrange(60))
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")
n = 0
for ci, dom in enumerate(names):
    persona = ci % 6
    start = {0: 150, 1: 100, 2: 140, 3: 120, 4: 0, 5: 20}[persona]
    end = {0: 183, 1: 183, 2: 183, 3: 183, 4: 183, 5: 140}[persona]
    events = {0: 3, 1: 20, 2: 25, 3: 80, 4: 180, 5: 150}[persona]
    for _ in range(events):
        n += 1
        day = random.randrange(start, end)
        kind = random.choice(["page_view", "doc_view", "download", "download", "telemetry"] if persona >= 2 else ["page_view", "doc_view"])
        o = {"id": f"q{n:05d}", "source": "telemetry" if kind == "telemetry" else "scarf", "kind": kind, "occurred_at": ts(day, random.randrange(24)), "actor": f"o-{ci:02d}{random.randrange(8)}"}
        if random.random() < 0.05: o["actor_email"] = f"dev{random.randrange(9)}@{dom}"
        else: o["company_domain"] = dom
        if kind in ("download", "telemetry"):
            o["package"] = "oqldb"; o["version"] = random.choice(["2.3.0", "2.4.1", "latest"] if day < 120 else ["2.4.1", "2.5.0"])
        else:
            o["url"] = random.choice(["/docs/install", "/docs/upgrade", "/blog/launch", "/pricing", "/"])
        out.append(o)
for i in range(60):
    n += 1
    out.append({"id": f"q{n:05d}", "source": "scarf", "kind": "page_view", "occurred_at": ts(random.randrange(183), 3), "actor_email": "someone@gmail.com", "url": "/blog/launch"})
out.sort(key=lambda o: o["occurred_at"])
with open("data/activities.ndjson", "w") as f:
    for o in out: f.write(json.dumps(o) + "\n")
hdr = "id,type,package,pixel,version,time,referer,user_agent,platform,variables,origin_id,origin_latitude,origin_longitude,origin_country,origin_city,origin_postal,origin_connection_type,origin_company,origin_domain,dnt,confidence,endpoint_id,origin_state,mtc_quota_exceeded"
rows = []
for i in range(300):
    dom = random.choice(names[:12]); t = ts(random.randrange(90, 183), random.randrange(24)).replace("Z", "Z")
    if random.random() < 0.4:
        rows.append(f"s{i:04d},pixel-fetch,,px-docs,,{t},https://oqldb.dev/docs/install,Mozilla/5.0,linux,,o-s{i%40},1.0,2.0,US,Austin,78701,corporate,{dom.split('.')[0].title()},{dom},false,0.8,ep{i%30},Texas,false")
    else:
        conn = "hosting" if i % 10 == 0 else "corporate"
        rows.append(f"s{i:04d},binary-download,oqldb,,2.5.0,{t},,pip/24.0,linux,{{}},o-s{i%40},1.0,2.0,US,Austin,78701,{conn},{dom.split('.')[0].title()},{dom},false,{0.3 if i % 7 == 0 else 0.85},ep{i%30},Texas,false")
rows += rows[:3]
open("data/scarf-export.csv", "w").write(hdr + "\n" + "\n".join(rows) + "\n")
