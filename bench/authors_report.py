"""The authors' PyTorch report generation, timed side by side with bench/report.ts.

Builds the authors' model from ../shared/golden/gen.py (the same module tree as their code,
MoE in its original "literal" form: every expert runs on every token) with the golden paper
config and weights, then times image encoding and their beam search (beam 3, the whole prefix
recomputed at every step) on one random 224x224 image. Prints one JSON line.

Usage (run by `npm run bench -- report --authors` when /usr/bin/python3 can import torch):
  OPENBLAS_NUM_THREADS=1 python3 bench/authors_report.py WEIGHTS [THREADS] [literal|gather]
("gather" computes only each expert's selected rows: the same values, a faster PyTorch.)
"""
import json
import os
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
golden = os.path.join(here, "..", "..", "shared", "golden")
sys.path.insert(0, golden)

import torch  # noqa: E402

import gen  # noqa: E402  (the authors' model, as the golden tensors were made)


def main() -> None:
    weights = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    impl = sys.argv[3] if len(sys.argv) > 3 else "literal"
    torch.set_num_threads(threads)
    with open(os.path.join(golden, "paper", "config.json")) as f:
        cfg = json.load(f)
    cfg = {**cfg, "dropout": 0.0, "attention_dropout": 0.0, "moe_impl": impl}
    model = gen.CaptionModel(cfg)
    sd, _ = gen.load_safetensors(weights)
    model.load_state_dict({k: v.float() if v.dtype == torch.float16 else v for k, v in sd.items()}, strict=True)
    model.eval()
    g = torch.Generator().manual_seed(99)
    s = cfg["image_size"]
    image = torch.randn(1, 3, s, s, generator=g)
    beam, T = cfg.get("beam_width", 3), cfg["text_seq_len"]
    # Warm-up (allocator, kernels), as the TypeScript side warms its pipelines.
    model.beam_search(image, cfg["sos_id"], cfg["eos_id"], cfg["pad_id"], beam, 2)
    t0 = time.perf_counter()
    model.encode_image(image)
    enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    seqs, _, _ = model.beam_search(image, cfg["sos_id"], cfg["eos_id"], cfg["pad_id"], beam, T)
    total = time.perf_counter() - t0
    steps = int((seqs[0] != cfg["pad_id"]).sum().item())  # tokens before any padding (sos included)
    print(json.dumps({"authors_encode_s": enc, "authors_decode_s": total - enc, "authors_steps": steps - 1, "threads": threads, "moe_impl": impl, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
