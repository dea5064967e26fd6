"""faiss-cpu (PyPI wheel) on the benchmark data: HNSW build time and, per
efSearch, single-thread QPS (one query per call, like the service) and
recall@10 against the exact ground truth. Prints one JSON line."""
import json, sys, time
import numpy as np
import faiss

d = sys.argv[1]
m, efc = int(sys.argv[2]), int(sys.argv[3])
D = 384
base = np.fromfile(f"{d}/base.f32", dtype="<f4").reshape(-1, D)
queries = np.fromfile(f"{d}/queries.f32", dtype="<f4").reshape(-1, D)
gt = np.fromfile(f"{d}/gt.i64", dtype="<i8").reshape(-1, 10)

index = faiss.IndexHNSWFlat(D, m, faiss.METRIC_INNER_PRODUCT)
index.hnsw.efConstruction = efc
t = time.perf_counter()
index.add(base)
build = time.perf_counter() - t

faiss.omp_set_num_threads(1)
sweep = []
for ef in [16, 24, 32, 48, 64, 96, 128, 192, 256]:
    index.hnsw.efSearch = ef
    found = 0
    t = time.perf_counter()
    for q in range(len(queries)):
        _, labels = index.search(queries[q : q + 1], 10)
        found += len(set(labels[0].tolist()) & set(gt[q].tolist()))
    secs = time.perf_counter() - t
    sweep.append({"ef": ef, "qps": len(queries) / secs, "recall": found / (len(queries) * 10)})
# The SIMD level of the library the wheel's loader picked (e.g. "AVX512").
simd = " ".join(o for o in faiss.get_compile_options().split() if o.startswith(("AVX", "SSE", "GENERIC", "NEON", "SVE")))
print(json.dumps({"name": f"faiss-cpu {faiss.__version__}", "simd": simd, "build_s": build, "sweep": sweep}))
