#!/usr/bin/env python3
"""Alertmanager's webhook fan-out on this machine, for comparison with `herald bench --e2e`.

Starts `herald sink` on 127.0.0.1:19999 and Alertmanager (Debian's prometheus-alertmanager)
on 127.0.0.1:19093 with one group per alert, posts N alerts at once and counts how fast the
sink receives the N webhooks (from the first one, so group_wait is not counted).

    python3 scripts/peers/alertmanager-fanout.py [N=10000] [group_interval=1h]

HERALD_BIN names the herald binary (default: the release build in $CARGO_TARGET_DIR or
./target). Loopback only; everything it starts is stopped at the end.
"""
import json, os, subprocess, sys, time, urllib.request, tempfile, shutil

H = os.environ.get('HERALD_BIN') or os.path.join(os.environ.get('CARGO_TARGET_DIR', 'target'), 'release', 'herald')
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
gi = sys.argv[2] if len(sys.argv) > 2 else '1h'
d = tempfile.mkdtemp()
open(f'{d}/am.yml','w').write(f"""global: {{resolve_timeout: 5m}}
route: {{receiver: hook, group_by: ['alertname'], group_wait: 1s, group_interval: {gi}, repeat_interval: 4h}}
receivers:
  - name: hook
    webhook_configs: [{{url: 'http://127.0.0.1:19999/hook', send_resolved: false}}]
""")
sink = subprocess.Popen([H, 'sink', '--quiet', '--listen', '127.0.0.1:19999'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
am = subprocess.Popen(['prometheus-alertmanager', f'--config.file={d}/am.yml', f'--storage.path={d}/data',
    '--web.listen-address=127.0.0.1:19093', '--cluster.listen-address='], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def get(u):
    return json.load(urllib.request.urlopen(u, timeout=5))
try:
    for _ in range(100):
        try:
            urllib.request.urlopen('http://127.0.0.1:19093/-/ready', timeout=1); break
        except Exception: time.sleep(0.2)
    alerts = [{"labels": {"alertname": f"a{i}", "severity": "critical"}, "annotations": {"summary": "x"}} for i in range(N)]
    req = urllib.request.Request('http://127.0.0.1:19093/api/v2/alerts', data=json.dumps(alerts).encode(), headers={'Content-Type': 'application/json'})
    urllib.request.urlopen(req, timeout=60)
    first, n = None, 0
    deadline = time.time() + 120
    while time.time() < deadline:
        n = get('http://127.0.0.1:19999/stats')['received']
        if n and first is None: first = (time.time(), n)
        if n >= N: break
        time.sleep(0.02)
    end = time.time()
    if first is None:
        sys.exit("no webhook arrived within 120 s")
    print(json.dumps({"peer": "alertmanager", "alerts": N, "group_interval": gi, "received": n,
        "seconds_from_first": round(end - first[0], 2), "webhooks_per_second": round((n - first[1]) / max(end - first[0], 1e-9))}))
finally:
    am.kill(); sink.kill(); shutil.rmtree(d, ignore_errors=True)
