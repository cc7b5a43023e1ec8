"""Start `quotacache worker` on its own embedded broker (default config), time /health,
then measure CPU of worker and broker over N seconds of idle via /proc/<pid>/stat."""
import os, sys, time, subprocess, shutil, socket, json, tempfile, argparse
import httpx

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])  # utime + stime (fields 14, 15)

def children(pid):
    out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [(int(l.split()[0]), l.split()[1]) for l in out.strip().splitlines()]

ap = argparse.ArgumentParser()
ap.add_argument("--seconds", type=float, default=60)
ap.add_argument("--venv", default="/work/wt-idle/.venv")
ap.add_argument("--hold", action="store_true", help="keep running after measuring (for profiling)")
ap.add_argument("--env", action="append", default=[])
ap.add_argument("--settle", type=float, default=5.0)
ap.add_argument("--gap", default="0.5,2.0")
ap.add_argument("--e2e", type=int, default=0, help="reads of fresh keys with ?wait (end-to-end refresh latency)")
a = ap.parse_args()

tmp = tempfile.mkdtemp(prefix="qc-idle-")
bport, wport = free_port(), free_port()
env = {**os.environ, "QUOTACACHE_BROKER__EMBEDDED_PORT": str(bport),
       "QUOTACACHE_DATA_DIR": f"{tmp}/data", "PYTHONUNBUFFERED": "1"}
for kv in a.env:
    k, v = kv.split("=", 1); env[k] = v
hz = os.sysconf("SC_CLK_TCK")
sim = None
if a.e2e:
    sport = free_port()
    sim = subprocess.Popen([f"{a.venv}/bin/python", "-m", "quotacache", "upstream-sim", "--port", str(sport), "--latency", "0"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(100):
        try: httpx.get(f"http://127.0.0.1:{sport}/_sim/stats"); break
        except httpx.HTTPError: time.sleep(0.1)
    httpx.post(f"http://127.0.0.1:{sport}/_sim/config", json={"limits": {"cryptometer": ["1000/60"]}, "endpoint_limits": {"cryptometer": ["1000/60"]}}).raise_for_status()
    env["QUOTACACHE_SERVICES__CRYPTOMETER__BASE_URL"] = f"http://127.0.0.1:{sport}"
    env["CRYPTOMETER_API_KEY"] = "sk-test"
    env["QUOTACACHE_SERVICES__CRYPTOMETER__ENDPOINT_LIMITS"] = '["1000/60"]'
    env["QUOTACACHE_SERVICES__CRYPTOMETER__LIMITS"] = '["1000/60"]'
p = None; bpid = None
try:
    t0 = time.monotonic()
    log = open(f"{tmp}/worker.log", "wb")
    p = subprocess.Popen([f"{a.venv}/bin/python", "-m", "quotacache", "worker", "--web-port", str(wport), "-l", "info"],
                         env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp)
    ready = None
    while time.monotonic() - t0 < 120:
        try:
            if httpx.get(f"http://127.0.0.1:{wport}/health", timeout=1).status_code == 200:
                ready = time.monotonic() - t0; break
        except httpx.HTTPError:
            pass
        if p.poll() is not None: break
        time.sleep(0.05)
    broker = [c for c in children(p.pid) if "tansu" in c[1] or "broker" in c[1]]
    bpid = broker[0][0] if broker else None
    print(json.dumps({"ready_s": ready, "worker_pid": p.pid, "broker": broker, "tmp": tmp, "wport": wport, "bport": bport}), flush=True)
    if ready is None:
        print(open(f"{tmp}/worker.log").read()[-3000:]); raise SystemExit(1)
    time.sleep(a.settle)
    bpid = broker[0][0] if broker else None
    w0, b0, s0 = cpu_ticks(p.pid), cpu_ticks(bpid) if bpid else 0, time.monotonic()
    time.sleep(a.seconds)
    w1, b1, s1 = cpu_ticks(p.pid), cpu_ticks(bpid) if bpid else 0, time.monotonic()
    el = s1 - s0
    res = {"ready_s": round(ready, 2), "worker_cpu_pct": round(100 * (w1 - w0) / hz / el, 2),
           "broker_cpu_pct": round(100 * (b1 - b0) / hz / el, 2), "seconds": round(el, 1)}
    res["total_pct"] = round(res["worker_cpu_pct"] + res["broker_cpu_pct"], 2)
    print(json.dumps(res), flush=True)
    if a.e2e:
        import random
        lats = []
        for i in range(a.e2e):
            time.sleep(random.uniform(*map(float, a.gap.split(","))))
            t = time.monotonic()
            r = httpx.get(f"http://127.0.0.1:{wport}/cache/cryptometer/ticker/S{i}X{random.randint(0,10**6)}", params={"wait": "10"}, timeout=20)
            lats.append(round((time.monotonic() - t) * 1000))
            assert r.status_code == 200, (r.status_code, r.text[:200])
        lats.sort()
        res["e2e_ms"] = {"min": lats[0], "median": lats[len(lats)//2], "max": lats[-1], "all": lats}
        print(json.dumps(res), flush=True)
    if a.hold:
        input_wait = float(os.environ.get("HOLD_SECONDS", "600"))
        time.sleep(input_wait)
finally:
    load = open('/proc/loadavg').read().split()[:3]
    print('loadavg', load, flush=True)
    if sim is not None and p is None: os.killpg(sim.pid, 15)
    if p is None: raise SystemExit
    os.killpg(p.pid, 15)
    try: p.wait(20)
    except subprocess.TimeoutExpired: os.killpg(p.pid, 9)
    time.sleep(1)
    if sim: os.killpg(sim.pid, 15)
    if bpid:
        try: os.kill(bpid, 9)
        except ProcessLookupError: pass
