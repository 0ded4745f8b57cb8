"""Reliability under a rolling restart: steady load through the gateway while playbooks/upgrade.yml restarts replicas.

Sends chat completions with the official openai SDK (no client retries) from --concurrency threads, runs the
rollout command, keeps the load for --settle seconds after it, then reports requests sent, failed, and p50/p99
latency, overall and during the rollout. Goal: 0 failed.

Example, against the Molecule gateway scenario (molecule converge -s gateway, then):

  python benchmarks/rolling_restart.py \
      --base-url https://172.18.0.2:8443/v1 --ca STATE/ca.pem --key-file STATE/key-ci --model smollm2 -- \
      ansible-playbook -i INVENTORY playbooks/upgrade.yml -e @restart.json

(ANSIBLE_CONFIG and ANSIBLE_COLLECTIONS_PATH as the scenario sets them; results in docs/roles/gateway.md)

where restart.json changes an arg of every instance (for example vllm_default_args with another max_num_seqs), so
that upgrade.yml restarts them host by host, each health-gated.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import subprocess
import sys
import threading
import time

import openai


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--ca", help="CA certificate of the gateway (PEM)")
    parser.add_argument("--key-file", required=True, help="file whose first word is the API key")
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load before the rollout")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load after the rollout")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the rollout, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the rollout command after --")

    with open(args.key_file, encoding="utf-8") as handle:
        key = handle.read().split()[0]
    context = ssl.create_default_context(cafile=args.ca) if args.ca else ssl.create_default_context()
    client = openai.OpenAI(
        base_url=args.base_url,
        api_key=key,
        max_retries=0,
        timeout=600,
        http_client=openai.DefaultHttpxClient(verify=context),
    )

    records, lock, stop = [], threading.Lock(), threading.Event()

    def worker(number):
        i = 0
        while not stop.is_set():
            start = time.monotonic()
            error = None
            try:
                client.chat.completions.create(
                    model=args.model,
                    messages=[{"role": "user", "content": f"Count to {(number + i) % 7 + 3}."}],
                    max_tokens=args.max_tokens,
                )
            except openai.OpenAIError as exc:
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
            with lock:
                records.append((start, time.monotonic() - start, error))
            i += 1

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(args.concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(args.warmup)
    rollout_start = time.monotonic()
    rollout = subprocess.run(command, capture_output=True, text=True, check=False)
    rollout_end = time.monotonic()
    time.sleep(args.settle)
    stop.set()
    for thread in threads:
        thread.join(timeout=700)

    def summary(rows):
        latencies = [r[1] * 1000 for r in rows if r[2] is None]
        return {
            "sent": len(rows),
            "failed": sum(1 for r in rows if r[2] is not None),
            "p50_ms": round(percentile(latencies, 0.50), 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
            "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        }

    during = [r for r in records if rollout_start <= r[0] <= rollout_end]
    result = {
        "rollout_rc": rollout.returncode,
        "rollout_s": round(rollout_end - rollout_start, 1),
        "concurrency": args.concurrency,
        "all": summary(records),
        "during_rollout": summary(during),
        "errors": sorted({r[2] for r in records if r[2]})[:10],
    }
    if rollout.returncode:
        result["rollout_tail"] = (rollout.stdout + rollout.stderr)[-3000:]
    print("| window | sent | failed | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- |")
    for name in ("all", "during_rollout"):
        row = result[name]
        print(f"| {name} | {row['sent']} | {row['failed']} | {row['p50_ms']} | {row['p99_ms']} |")
    print(f"rollout: rc {result['rollout_rc']} in {result['rollout_s']} s; errors: {result['errors']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return 0 if rollout.returncode == 0 and result["all"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
