"""Ask an OpenAI-compatible endpoint for one token, again and again, until a stop file appears; count failures.

Usage: python watch.py BASE_URL MODEL STOP_FILE [MAX_SECONDS]
Prints {"requests": N, "failed": N, "errors": [...first 5...], "seconds": S} as JSON. Used to prove that an instance
stays up while another one on the same host restarts.
"""

from __future__ import annotations

import json
import os
import sys
import time

from openai import OpenAI


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    base_url, model, stop_file = argv[1], argv[2], argv[3]
    max_seconds = float(argv[4]) if len(argv) > 4 else 900.0
    client = OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "none"), timeout=30, max_retries=0)
    began = time.monotonic()
    requests = failed = 0
    errors: list[str] = []
    while not os.path.exists(stop_file) and time.monotonic() - began < max_seconds:
        requests += 1
        try:
            client.completions.create(model=model, prompt="Hello", max_tokens=1, temperature=0)
        except Exception as exc:  # every failure counts
            failed += 1
            if len(errors) < 5:
                errors.append(f"{time.monotonic() - began:.1f}s: {type(exc).__name__}: {exc}")
        time.sleep(0.2)
    print(json.dumps({"requests": requests, "failed": failed, "errors": errors, "seconds": time.monotonic() - began}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
