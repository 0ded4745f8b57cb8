"""Ask an OpenAI-compatible endpoint one question with the official openai SDK; print the answer.

Usage: python ask.py BASE_URL MODEL [QUESTION]   (OPENAI_API_KEY is used when set)
"""

from __future__ import annotations

import json
import os
import sys

from openai import OpenAI


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    base_url, model = argv[1], argv[2]
    question = argv[3] if len(argv) > 3 else "What is the capital of France?"
    client = OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "none"), timeout=120, max_retries=2)
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        max_tokens=32,
        temperature=0,
    )
    print(json.dumps({"model": reply.model, "answer": reply.choices[0].message.content}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
