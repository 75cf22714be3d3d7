#!/usr/bin/env python3
"""The PyTorch CPU eager baseline of `luoshu bench train`.

Trains the same LLaMA as luoshu (crates/luoshu-model/src/llama.rs): token embedding; per
layer RMSNorm -> q, k, v projections stored [in, out] -> rotary embedding (rotate-half:
the first and second halves of each head are the pair) -> causal attention -> wo,
residual; RMSNorm -> SwiGLU silu(x·w_gate) * (x·w_up) -> w_down, residual; final
RMSNorm; tied or untied LM head; loss = sum of cross-entropy over target tokens / their
number. fp32, AdamW (weight decay on matrices only), global-norm clipping, constant lr.

The token batch comes on stdin as little-endian int64 [batch, seq + 1] (inputs are the
first seq columns, targets the last seq), so both systems train on identical data.
Prints `key value` lines: torch_version, threads, step_ms (median of the measured steps),
best_step_ms (the fastest of them), tokens_per_s (from the median), peak_rss_mib (ru_maxrss
of this process), import_rss_mib (ru_maxrss right after `import torch`), first_loss,
last_loss.
Exits with status 2 and a message on stderr when PyTorch is not installed.
"""
import argparse
import math
import os
import resource
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model = p.add_argument_group("model")
    for name in ["vocab-size", "d-model", "n-layers", "n-heads", "n-kv-heads", "d-ff"]:
        model.add_argument(f"--{name}", type=int, required=True)
    model.add_argument("--rope-theta", type=float, required=True)
    model.add_argument("--norm-eps", type=float, required=True)
    model.add_argument("--tie-embeddings", action="store_true")
    run = p.add_argument_group("run")
    run.add_argument("--batch", type=int, required=True)
    run.add_argument("--seq", type=int, required=True)
    run.add_argument("--steps", type=int, required=True, help="measured steps")
    run.add_argument("--warmup", type=int, required=True, help="unmeasured steps first")
    run.add_argument("--threads", type=int, required=True)
    run.add_argument("--seed", type=int, default=0)
    opt = p.add_argument_group("optimizer")
    opt.add_argument("--lr", type=float, required=True)
    opt.add_argument("--beta1", type=float, required=True)
    opt.add_argument("--beta2", type=float, required=True)
    opt.add_argument("--eps", type=float, required=True)
    opt.add_argument("--weight-decay", type=float, required=True)
    opt.add_argument("--grad-clip", type=float, required=True)
    return p.parse_args()


def build_model(torch, F, a):
    """Parameters (named and shaped as luoshu's param_specs) and the loss function."""
    d, head_dim = a.d_model, a.d_model // a.n_heads
    kv = a.n_kv_heads * head_dim
    std, out_std = 0.02, 0.02 / math.sqrt(2 * a.n_layers)

    def normal(*shape, s=std):
        return torch.nn.Parameter(torch.randn(*shape) * s)

    def ones(n):
        return torch.nn.Parameter(torch.ones(n))

    params = {"embed": normal(a.vocab_size, d)}
    for l in range(a.n_layers):
        p = f"layers.{l}."
        params.update({
            p + "attn_norm": ones(d),
            p + "wq": normal(d, d),
            p + "wk": normal(d, kv),
            p + "wv": normal(d, kv),
            p + "wo": normal(d, d, s=out_std),
            p + "mlp_norm": ones(d),
            p + "w_gate": normal(d, a.d_ff),
            p + "w_up": normal(d, a.d_ff),
            p + "w_down": normal(a.d_ff, d, s=out_std),
        })
    params["final_norm"] = ones(d)
    if not a.tie_embeddings:
        params["lm_head"] = normal(d, a.vocab_size)

    half = head_dim // 2
    inv_freq = a.rope_theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / head_dim)
    angles = torch.arange(a.seq, dtype=torch.float64)[:, None] * inv_freq[None, :]
    # [seq, 1, half]: broadcast over the heads of x [batch, seq, heads, head_dim].
    cos = angles.cos().float()[:, None, :]
    sin = angles.sin().float()[:, None, :]

    if hasattr(F, "rms_norm"):
        def rms_norm(x, w):
            return F.rms_norm(x, (d,), w, a.norm_eps)
    else:
        def rms_norm(x, w):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + a.norm_eps) * w

    def rope(x):
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def loss_fn(inputs, targets, loss_scale):
        b, s = inputs.shape
        h = params["embed"][inputs.reshape(-1)]
        group = a.n_heads // a.n_kv_heads
        for l in range(a.n_layers):
            p = lambda n: params[f"layers.{l}.{n}"]
            x = rms_norm(h, p("attn_norm"))
            q = rope((x @ p("wq")).view(b, s, a.n_heads, head_dim)).transpose(1, 2)
            k = rope((x @ p("wk")).view(b, s, a.n_kv_heads, head_dim)).transpose(1, 2)
            v = (x @ p("wv")).view(b, s, a.n_kv_heads, head_dim).transpose(1, 2)
            if group > 1:
                k = k.repeat_interleave(group, dim=1)
                v = v.repeat_interleave(group, dim=1)
            att = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=1.0 / math.sqrt(head_dim))
            h = h + att.transpose(1, 2).reshape(b * s, d) @ p("wo")
            x = rms_norm(h, p("mlp_norm"))
            h = h + (F.silu(x @ p("w_gate")) * (x @ p("w_up"))) @ p("w_down")
        h = rms_norm(h, params["final_norm"])
        head = params["embed"].t() if a.tie_embeddings else params["lm_head"]
        losses = F.cross_entropy(h @ head, targets.reshape(-1), ignore_index=-100, reduction="sum")
        return losses * loss_scale

    return params, loss_fn


def main():
    a = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"PyTorch is not installed ({e}); install it with `pip install torch`",
              file=sys.stderr)
        return 2
    # What the library alone costs (this wheel may map CUDA libraries even on CPU).
    import_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    raw = sys.stdin.buffer.read()
    expected = a.batch * (a.seq + 1) * 8
    if len(raw) != expected:
        print(f"expected {expected} bytes of int64 tokens [{a.batch}, {a.seq + 1}] on stdin, "
              f"got {len(raw)}", file=sys.stderr)
        return 1
    tokens = torch.frombuffer(bytearray(raw), dtype=torch.int64).view(a.batch, a.seq + 1)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    loss_scale = 1.0 / int((targets != -100).sum())

    params, loss_fn = build_model(torch, F, a)
    matrices = [p for p in params.values() if p.dim() >= 2]
    gains = [p for p in params.values() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": a.weight_decay},
         {"params": gains, "weight_decay": 0.0}],
        lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)

    times, losses = [], []
    for step in range(a.warmup + a.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(inputs, targets, loss_scale)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params.values(), a.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        if step >= a.warmup:
            times.append(time.perf_counter() - start)

    step_s = statistics.median(times)
    # ru_maxrss is in KiB on Linux.
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"torch_version {torch.__version__}")
    print(f"threads {torch.get_num_threads()}")
    print(f"step_ms {step_s * 1e3:.3f}")
    print(f"best_step_ms {min(times) * 1e3:.3f}")
    print(f"tokens_per_s {a.batch * a.seq / step_s:.1f}")
    print(f"peak_rss_mib {peak_kib / 1024:.1f}")
    print(f"import_rss_mib {import_rss_mib:.1f}")
    print(f"first_loss {losses[0]:.6f}")
    print(f"last_loss {losses[-1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
