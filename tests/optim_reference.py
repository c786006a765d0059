"""Reference optimizers in numpy (float64), written from the update rules in
docs/OPTIMIZERS.md and kept independent of the C code in trainer/optim*.c.

run(optimizer, settings, shape, w0, grads) returns the parameters
after each step, so a test can compare them with `sweep-train optim-trace`.
Roots use numpy.linalg.eigh for both root methods, because the coupled
Newton iteration converges to the same matrix.
"""

import numpy as np

DEFAULTS = {
    "adam": dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0),
    "adamw": dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01),
    "sm3": dict(lr=0.1, b1=0.9, b2=1.0, eps=1e-8, weight_decay=0.0),
    "shampoo": dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, matrix_eps=1e-6,
                    block_size=128, precondition_every=10, start_preconditioning_step=1,
                    graft="adam", graft_beta2=None, graft_eps=1e-10, nesterov=True,
                    root_method="eigh", max_precond_dim=4096, precondition_async=False),
}


def settings_for(optimizer, settings):
    """Returns the defaults of optimizer overridden by settings (parsed values)."""
    hp = dict(DEFAULTS[optimizer])
    for name, value in settings.items():
        if name not in hp:
            raise KeyError("unknown setting %s for %s" % (name, optimizer))
        hp[name] = value
    if optimizer == "shampoo" and hp["graft_beta2"] is None:
        hp["graft_beta2"] = hp["b2"]
    return hp


def second_moment_weight(beta2):
    """w2 in the formulas: 1 when beta2 == 1 (a plain sum), else 1 - beta2."""
    return 1.0 if beta2 == 1.0 else 1.0 - beta2


class Sm3Accumulator:
    """SM3-II accumulators: one per row and per column of a matrix, one per
    element of a vector. update() returns nu for the gradient."""

    def __init__(self, shape):
        self.matrix = len(shape) == 2
        if self.matrix:
            self.row = np.zeros(shape[0])
            self.col = np.zeros(shape[1])
        else:
            self.acc = np.zeros(shape[0])

    def update(self, g, beta2):
        w2 = second_moment_weight(beta2)
        if not self.matrix:
            nu = beta2 * self.acc + w2 * g * g
            self.acc = nu
            return nu
        nu = beta2 * np.minimum(self.row[:, None], self.col[None, :]) + w2 * g * g
        self.row = nu.max(axis=1)
        self.col = nu.max(axis=0)
        return nu


def adam_run(hp, w, grads, decoupled):
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    out = []
    for k, g in enumerate(grads):
        t = k + 1
        g = g.copy()
        if decoupled:
            w = w * (1.0 - hp["lr"] * hp["weight_decay"])
        else:
            g = g + hp["weight_decay"] * w
        m = hp["b1"] * m + (1 - hp["b1"]) * g
        v = hp["b2"] * v + (1 - hp["b2"]) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - hp["b2"] ** t) + hp["eps"]
        w = w - hp["lr"] / (1 - hp["b1"] ** t) * m / denom
        out.append(w.copy())
    return out


def sm3_run(hp, w, grads):
    acc = Sm3Accumulator(w.shape)
    m = np.zeros_like(w)
    out = []
    for g in grads:
        nu = acc.update(g, hp["b2"])
        u = g / np.sqrt(nu + hp["eps"])
        m = hp["b1"] * m + (1 - hp["b1"]) * u
        w = w * (1.0 - hp["lr"] * hp["weight_decay"])
        w = w - hp["lr"] * m
        out.append(w.copy())
    return out


def inverse_fourth_root(stat, matrix_eps):
    """(S + e I)^(-1/4) with e = matrix_eps * max(lambda_max, 1e-6), or None
    when the result is not finite."""
    lam, q = np.linalg.eigh(stat)
    e = matrix_eps * max(lam.max(), 1e-6)
    with np.errstate(all="ignore"):
        root = (q * (lam + e) ** -0.25) @ q.T
    return root if np.all(np.isfinite(root)) else None


class GraftState:
    """The graft optimizer's state and its direction A."""

    def __init__(self, kind, shape):
        self.kind = kind
        self.v = np.zeros(shape)
        self.sm3 = Sm3Accumulator(shape)

    def direction(self, g, gb, ge, t):
        if self.kind in ("sgd", "none"):
            return g.copy()
        if self.kind == "sm3":
            return g / (np.sqrt(self.sm3.update(g, gb)) + ge)
        if self.kind == "adagrad" or gb == 1.0:
            self.v = self.v + g * g
        else:
            self.v = gb * self.v + (1 - gb) * g * g
        v = self.v
        if self.kind == "adam" and gb < 1.0:
            v = v / (1 - gb ** t)
        return g / (np.sqrt(v) + ge)


def chunks(length, size):
    return [(start, min(start + size, length)) for start in range(0, length, size)]


def shampoo_run(hp, w, grads):
    matrix = w.ndim == 2 and max(w.shape) <= hp["max_precond_dim"]
    blocks = []
    if matrix:
        for rows in chunks(w.shape[0], hp["block_size"]):
            for cols in chunks(w.shape[1], hp["block_size"]):
                nr, nc = rows[1] - rows[0], cols[1] - cols[0]
                blocks.append(dict(rows=rows, cols=cols,
                                   L=hp["matrix_eps"] * np.eye(nr), R=hp["matrix_eps"] * np.eye(nc),
                                   PL=np.eye(nr), PR=np.eye(nc)))
    graft = GraftState(hp["graft"], w.shape)
    m = np.zeros_like(w)
    mg = np.zeros_like(w)
    b1, b2 = hp["b1"], hp["b2"]
    w2 = second_moment_weight(b2)
    out = []
    for k, g in enumerate(grads):
        a = graft.direction(g, hp["graft_beta2"], hp["graft_eps"], k + 1)
        if matrix:
            d = np.zeros_like(w)
            for blk in blocks:
                (r0, r1), (c0, c1) = blk["rows"], blk["cols"]
                gb = g[r0:r1, c0:c1]
                blk["L"] = b2 * blk["L"] + w2 * gb @ gb.T
                blk["R"] = b2 * blk["R"] + w2 * gb.T @ gb
                if k % hp["precondition_every"] == 0:
                    # Asynchronous: install the roots of the previous
                    # refresh's snapshot, then snapshot this step's statistics.
                    source = blk
                    if hp["precondition_async"]:
                        source = blk.get("snapshot")
                        blk["snapshot"] = dict(L=blk["L"].copy(), R=blk["R"].copy())
                    for stat, root in (("L", "PL"), ("R", "PR")):
                        if source is None:
                            continue
                        new_root = inverse_fourth_root(source[stat], hp["matrix_eps"])
                        if new_root is not None:
                            blk[root] = new_root
                d[r0:r1, c0:c1] = blk["PL"] @ gb @ blk["PR"]
        else:
            d = a.copy()
        if hp["graft"] == "none":
            u = d
        else:
            u = d * np.linalg.norm(a) / (np.linalg.norm(d) + 1e-16)
        m = b1 * m + u
        mg = b1 * mg + a
        if k >= hp["start_preconditioning_step"]:
            mu, du = m, u
        else:
            mu, du = mg, a
        update = du + b1 * mu if hp["nesterov"] else mu
        w = w - hp["lr"] * hp["weight_decay"] * w
        w = w - hp["lr"] * update
        out.append(w.copy())
    return out


def run(optimizer, settings, shape, w0, grads):
    """Returns the parameters (float64 arrays of shape) after each step."""
    hp = settings_for(optimizer, settings)
    w = np.asarray(w0, dtype=np.float64).reshape(shape)
    gs = [np.asarray(g, dtype=np.float64).reshape(shape) for g in grads]
    if optimizer in ("adam", "adamw"):
        return adam_run(hp, w, gs, decoupled=optimizer == "adamw")
    if optimizer == "sm3":
        return sm3_run(hp, w, gs)
    if optimizer == "shampoo":
        return shampoo_run(hp, w, gs)
    raise KeyError("unknown optimizer %s" % optimizer)
