"""The Python baselines `cargo xtask bench` compares seqc with, one case per call.

Usage: baselines.py CASE [--iters N] [--warmup N] [--threads N] [key=value ...]
Prints one JSON object: {"case", "median_s", "min_s", "times_s", "versions"}. Exits 3 with
a message on stderr when a package it needs is missing (the caller reports the baseline as
skipped). Inputs are random; the timed region is the computation only.

Cases:
  matmul n=N                      numpy f32 a @ b (OpenBLAS)
  sdpa t=T                        torch SDPA, causal, f32, B=1 H=8 D=64
  linear_attention t=T chunk=C    causal linear attention (elu+1), chunked, in PyTorch
  mamba t=T                       HF transformers MambaMixer.forward (pure torch on CPU), mamba-130m
                                  sizes (d_model 768), B=1, random weights, eval, no cache
  moe t=T                         HF transformers MixtralSparseMoeBlock.forward, 8 experts, top 2,
                                  d_model 256, expert width 512, B=1, random weights, eval
"""

import json
import statistics
import sys
import time


def missing(pkg, err):
    print(f"baselines.py: {pkg} is not installed ({err}); "
          f"pip install -r xtask/bench/requirements.txt", file=sys.stderr)
    sys.exit(3)


def timed(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def case_matmul(p):
    try:
        import numpy as np
    except ImportError as e:
        missing("numpy", e)
    n = int(p.get("n", 1024))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return (lambda: a @ b), {"numpy": np.__version__}


def torch_or_exit():
    try:
        import torch
    except ImportError as e:
        missing("torch", e)
    return torch


def case_sdpa(p):
    torch = torch_or_exit()
    t = int(p.get("t", 4096))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 8, t, 64, generator=g) for _ in range(3))
    f = torch.nn.functional.scaled_dot_product_attention

    def run():
        with torch.no_grad():
            f(q, k, v, is_causal=True)
    return run, {"torch": torch.__version__}


def chunked_linear_attention(torch, q, k, v, c):
    """Causal linear attention with φ = elu + 1 and its normaliser, chunk by chunk: within a
    chunk the masked quadratic form, across chunks a [D, D] state and a [D] key sum."""
    phi = lambda x: torch.nn.functional.elu(x) + 1.0
    q, k = phi(q), phi(k)
    b, h, t, d = q.shape
    s = q.new_zeros(b, h, d, v.shape[-1])
    z = q.new_zeros(b, h, d)
    out = torch.empty_like(v)
    mask = torch.ones(c, c, dtype=torch.bool).tril()
    for i in range(0, t, c):
        qc, kc, vc = q[:, :, i:i + c], k[:, :, i:i + c], v[:, :, i:i + c]
        n = qc.shape[2]
        a = (qc @ kc.transpose(-1, -2)).masked_fill(~mask[:n, :n], 0.0)
        num = a @ vc + qc @ s
        den = a.sum(-1) + (qc @ z.unsqueeze(-1)).squeeze(-1)
        out[:, :, i:i + c] = num / den.unsqueeze(-1)
        s = s + kc.transpose(-1, -2) @ vc
        z = z + kc.sum(2)
    return out


def case_linear_attention(p):
    torch = torch_or_exit()
    t, c = int(p.get("t", 16384)), int(p.get("chunk", 64))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 8, t, 64, generator=g) for _ in range(3))

    def run():
        with torch.no_grad():
            chunked_linear_attention(torch, q, k, v, c)
    return run, {"torch": torch.__version__}


def case_mamba(p):
    torch = torch_or_exit()
    try:
        import transformers
        from transformers.models.mamba.modeling_mamba import MambaMixer
    except ImportError as e:
        missing("transformers", e)
    t = int(p.get("t", 2048))
    cfg = transformers.MambaConfig(hidden_size=768, intermediate_size=1536, state_size=16,
                                   conv_kernel=4, time_step_rank=48, use_mambapy=False)
    torch.manual_seed(0)
    mixer = MambaMixer(cfg, layer_idx=0).eval()
    x = torch.randn(1, t, 768)

    def run():
        with torch.no_grad():
            mixer(x)
    return run, {"torch": torch.__version__, "transformers": transformers.__version__}


def case_moe(p):
    torch = torch_or_exit()
    try:
        import transformers
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    except ImportError as e:
        missing("transformers", e)
    t = int(p.get("t", 2048))
    cfg = transformers.MixtralConfig(hidden_size=256, intermediate_size=512,
                                     num_local_experts=8, num_experts_per_tok=2)
    # HF's default loop over the experts hit by some token ("grouped_mm" measured the same
    # on this CPU, "batched_mm" far slower); set explicitly, as a standalone block has none.
    cfg._experts_implementation = "eager"
    torch.manual_seed(0)
    block = MixtralSparseMoeBlock(cfg).eval()
    x = torch.randn(1, t, 256)

    def run():
        with torch.no_grad():
            block(x)
    return run, {"torch": torch.__version__, "transformers": transformers.__version__}


CASES = {"matmul": case_matmul, "sdpa": case_sdpa,
         "linear_attention": case_linear_attention, "mamba": case_mamba, "moe": case_moe}


def main(argv):
    if not argv or argv[0] not in CASES:
        print(__doc__, file=sys.stderr)
        return 2
    case, rest = argv[0], argv[1:]
    iters, warmup, threads, params = 5, 1, None, {}
    while rest:
        a = rest.pop(0)
        if a == "--iters":
            iters = int(rest.pop(0))
        elif a == "--warmup":
            warmup = int(rest.pop(0))
        elif a == "--threads":
            threads = int(rest.pop(0))
        elif "=" in a:
            key, val = a.split("=", 1)
            params[key] = val
        else:
            print(f"baselines.py: unexpected argument `{a}`", file=sys.stderr)
            return 2
    fn, versions = CASES[case](params)
    if threads is not None and "torch" in versions:
        import torch
        torch.set_num_threads(threads)
    times = timed(fn, iters, warmup)
    print(json.dumps({"case": case, "median_s": statistics.median(times),
                      "min_s": min(times), "times_s": times, "versions": versions}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
