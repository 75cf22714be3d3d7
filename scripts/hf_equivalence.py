#!/usr/bin/env python3
"""luoshu's Hugging Face export, checked against transformers itself.

Trains two tiny luoshu runs on the default corpus (grouped-query attention with an untied
head; multi-head attention with tied embeddings), exports each with `luoshu export`, loads
the directory with transformers' AutoModelForCausalLM and AutoTokenizer, and checks

  - logits on a few prompts: max |transformers - luoshu| <= 1e-4 in f32, luoshu's side
    from `luoshu generate --print-logits`;
  - tokenization of a few hundred lines of the default corpus (and decoding back to the
    line) equals luoshu's (`luoshu generate --print-tokens`);
  - a bf16 export holds exactly torch's bf16 rounding of the f32 weights.

Exits 0 with the reason printed when torch or transformers cannot be imported; the README
names the pip command that installs them.

usage: scripts/hf_equivalence.py [--luoshu target/debug/luoshu]
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

TOLERANCE = 1e-4
PROMPTS = [
    "fn main() {",
    "let mut total = values.iter().map(|v| v * 2).sum::<u64>();",
    "impl<T: Clone + Send> Iterator for Chunks<T> where T: 'static {",
    "// comments may hold any text: Größe, 大小, ±∞",
]
TOKENIZATION_LINES = 300
VARIANTS = {
    "gqa-untied": {"n_heads": 4, "n_kv_heads": 2, "tie_embeddings": "false"},
    "mha-tied": {"n_heads": 4, "n_kv_heads": 4, "tie_embeddings": "true"},
}

CONFIG = """name = "{name}"
steps = 30
eval_every = 30
checkpoint_every = 30
seed = 5

[model]
vocab_size = 512
d_model = 64
n_layers = 2
n_heads = {n_heads}
n_kv_heads = {n_kv_heads}
d_ff = 160
max_seq_len = 64
rope_theta = 10000.0
norm_eps = 1e-5
tie_embeddings = {tie_embeddings}

[data]
max_bytes = 400000
vocab_size = 512
max_len = 64
bucket_edges = [32, 64]
tokens_per_micro_batch = 512
global_batch_tokens = 1024
"""


def run(luoshu, cwd, *args):
    out = subprocess.run([luoshu, *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"hf_equivalence: luoshu {' '.join(args[:3])} failed:\n{out.stderr}")
    return out.stdout


def corpus_lines(count):
    """`count` non-empty lines of the default corpus (the cargo registry's Rust sources)."""
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    files = sorted(glob.glob(os.path.join(home, "registry/src/*/*/src/**/*.rs"), recursive=True))
    if not files:
        sys.exit(f"hf_equivalence: no default corpus under {home}/registry/src")
    lines = []
    # A few lines from many files, so the sample spans crates and styles.
    for path in files[:: max(1, len(files) // 60)]:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        picked = [l.rstrip("\r") for l in text.split("\n")]
        picked = [l for l in picked if l.strip() and "\r" not in l and len(l) <= 160]
        lines.extend(picked[:8])
        if len(lines) >= count:
            break
    return lines[:count]


def check_logits(torch, model, tokenizer, luoshu, cwd, run_dir):
    """The max abs logit difference over PROMPTS, and the largest abs logit."""
    worst, scale = 0.0, 0.0
    for prompt in PROMPTS:
        ours = json.loads(run(luoshu, cwd, "generate", "--run", run_dir, "--prompt", prompt,
                              "--print-logits"))
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if ids != ours["tokens"]:
            sys.exit(f"hf_equivalence: {prompt!r}: transformers tokens {ids}, luoshu {ours['tokens']}")
        with torch.no_grad():
            theirs = model(torch.tensor([ids])).logits[0].double()
        diff = (theirs - torch.tensor(ours["logits"], dtype=torch.float64)).abs().max().item()
        worst, scale = max(worst, diff), max(scale, theirs.abs().max().item())
    if worst > TOLERANCE:
        sys.exit(f"hf_equivalence: max abs logit difference {worst:.3g} > {TOLERANCE}")
    return worst, scale


def check_tokenization(tokenizer, luoshu, cwd, run_dir, lines):
    ours = json.loads(run(luoshu, cwd, "generate", "--run", run_dir, "--prompt",
                          "\n".join(lines), "--print-tokens"))
    if len(ours) != len(lines):
        sys.exit(f"hf_equivalence: luoshu tokenized {len(ours)} lines, expected {len(lines)}")
    for line, ids in zip(lines, ours):
        theirs = tokenizer(line, add_special_tokens=False)["input_ids"]
        if theirs != ids:
            sys.exit(f"hf_equivalence: {line!r}: transformers tokens {theirs}, luoshu {ids}")
        decoded = tokenizer.decode(theirs)
        if decoded != line:
            sys.exit(f"hf_equivalence: {line!r} decodes to {decoded!r}")
    return sum(len(ids) for ids in ours)


def check_bf16(torch, transformers, model, luoshu, cwd, run_dir, out_dir):
    run(luoshu, cwd, "export", "--run", run_dir, "--to", out_dir, "--dtype", "bf16")
    half = transformers.AutoModelForCausalLM.from_pretrained(out_dir)
    full = dict(model.named_parameters())
    for name, param in half.named_parameters():
        if param.dtype != torch.bfloat16:
            sys.exit(f"hf_equivalence: bf16 export: {name} loads as {param.dtype}")
        if not torch.equal(param, full[name].to(torch.bfloat16)):
            sys.exit(f"hf_equivalence: bf16 export: {name} is not torch's rounding of f32")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--luoshu", default="target/debug/luoshu", help="the luoshu binary")
    args = parser.parse_args()
    try:
        import torch
        import transformers
    except Exception as e:  # ImportError, or a broken install failing while importing
        print(f"hf_equivalence: skipped: cannot import torch and transformers ({e})")
        return 0
    luoshu = os.path.abspath(args.luoshu)
    if not os.access(luoshu, os.X_OK):
        sys.exit(f"hf_equivalence: no luoshu binary at {luoshu}: build it with cargo build")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    lines = corpus_lines(TOKENIZATION_LINES)
    print(f"hf_equivalence: torch {torch.__version__}, transformers {transformers.__version__}")
    with tempfile.TemporaryDirectory(prefix="luoshu-hf-") as cwd:
        for name, fields in VARIANTS.items():
            with open(os.path.join(cwd, f"{name}.toml"), "w") as f:
                f.write(CONFIG.format(name=name, **fields))
            run(luoshu, cwd, "train", "--config", f"{name}.toml")
            run_dir, out_dir = f"runs/{name}", os.path.join(cwd, f"hf-{name}")
            run(luoshu, cwd, "export", "--run", run_dir, "--to", out_dir)
            model = transformers.AutoModelForCausalLM.from_pretrained(out_dir)
            model.eval()
            if next(model.parameters()).dtype != torch.float32:
                sys.exit(f"hf_equivalence: {name}: the f32 export did not load as float32")
            tokenizer = transformers.AutoTokenizer.from_pretrained(out_dir)
            worst, scale = check_logits(torch, model, tokenizer, luoshu, cwd, run_dir)
            tokens = check_tokenization(tokenizer, luoshu, cwd, run_dir, lines)
            check_bf16(torch, transformers, model, luoshu, cwd, run_dir, out_dir + "-bf16")
            print(f"hf_equivalence: {name}: max abs logit difference {worst:.3g} (logits up "
                  f"to {scale:.3g}) on {len(PROMPTS)} prompts; {len(lines)} lines ({tokens} tokens) tokenized "
                  f"and decoded alike; bf16 export is torch's rounding")
    print("hf_equivalence: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
