"""100,000 x 384 unit vectors shaped like sentence embeddings (a mixture
of 1,000 clusters), 1,000 queries from the same mixture, and the exact
top-10 by inner product. Deterministic (seed 42)."""
import sys
import numpy as np

d, n, nq, D = sys.argv[1], 100_000, 1_000, 384
rng = np.random.default_rng(42)
centers = rng.standard_normal((1000, D)).astype("f4")

def draw(k):
    x = centers[rng.integers(0, len(centers), k)] + 0.8 * rng.standard_normal((k, D)).astype("f4")
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("<f4")

base, queries = draw(n), draw(nq)
gt = np.argsort(-(queries @ base.T), axis=1)[:, :10].astype("<i8")
base.tofile(f"{d}/base.f32"); queries.tofile(f"{d}/queries.f32"); gt.tofile(f"{d}/gt.i64")
