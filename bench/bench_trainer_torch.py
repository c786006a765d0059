#!/usr/bin/python3
"""PyTorch CPU reference for bench/bench_trainer.sh. It trains the same
byte-level GPT as trainer/ (pre-LayerNorm blocks, causal attention, tanh GELU
MLP, tied head, no dropout) with Adam and global-norm clipping at 1.0. It
prints one JSON line with tokens/s measured after warm-up: the mean, and the
fastest step (the one least disturbed by other jobs on a shared machine).

  bench_trainer_torch.py --data FILE --config S|M|M256|L [--threads N] [--warmup W] [--seconds S]
"""
import argparse
import json
import math
import resource
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {  # n_layer, d_model, n_head, seq_len, batch_size
    "S": (2, 64, 4, 64, 16),
    "M": (4, 128, 4, 128, 16),
    "M256": (4, 128, 4, 128, 256),
    "L": (6, 256, 8, 128, 32),
}


class Block(nn.Module):
    def __init__(self, d, n_head, n_layer):
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.fc_proj = nn.Linear(4 * d, d)
        for lin in (self.qkv, self.fc):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)
        for lin in (self.proj, self.fc_proj):
            nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * n_layer))
            nn.init.zeros_(lin.bias)

    def forward(self, x, mask):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, n_layer, d, n_head, T):
        super().__init__()
        self.wte = nn.Parameter(torch.randn(256, d) * 0.02)
        self.wpe = nn.Parameter(torch.randn(T, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, n_head, n_layer) for _ in range(n_layer)])
        self.lnf = nn.LayerNorm(d)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1))

    def forward(self, idx, targets):
        x = self.wte[idx] + self.wpe[: idx.shape[1]]
        for b in self.blocks:
            x = b(x, self.mask)
        logits = self.lnf(x) @ self.wte.t()
        return F.cross_entropy(logits.view(-1, 256), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", default="S", choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(1)
    L, d, nh, T, B = CONFIGS[a.config]
    data = np.frombuffer(open(a.data, "rb").read(), dtype=np.uint8)
    train = torch.from_numpy(data[: len(data) - len(data) // 10].astype(np.int64))
    model = GPT(L, d, nh, T)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(1)

    def step():
        offs = torch.randint(0, len(train) - T - 1, (B,), generator=gen)
        win = torch.stack([train[o: o + T + 1] for o in offs.tolist()])
        loss = model(win[:, :-1], win[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    n, start, best = 0, time.perf_counter(), float("inf")
    while True:
        t0 = time.perf_counter()
        loss = step()
        t1 = time.perf_counter()
        best = min(best, t1 - t0)
        n += 1
        elapsed = t1 - start
        if elapsed >= a.seconds and n >= 3:
            break
    step_ms = elapsed * 1e3 / n
    print(json.dumps({
        "impl": "pytorch", "config": a.config, "threads": a.threads, "steps": n,
        "step_ms": round(step_ms, 3), "tokens_per_s": round(B * T / (step_ms / 1e3), 1),
        "best_step_ms": round(best * 1e3, 3), "best_tokens_per_s": round(B * T / best, 1),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "loss": round(loss, 4), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
