"""How many test samples rank the best cells stably: the top 20 cells of the mnist1d correlation
sample (by seed-0 validation score, as ``correlate.py`` picks them), trained once each (exact,
the ``mnist1d-devnet`` recipe, epoch 0 of the devnet reference chain), scored on held-out sets of
the two keys ``paper-test`` and ``paper-test-2`` at 5,000, 10,000 and 20,000 samples; prints
Spearman rho between the two keys' scores per size and writes
``bench/paper/correlation_mnist1d_test_sizes.json``. Needs ``correlation_mnist1d/`` (run
``correlate.py --task mnist1d`` first); about 2.5 minutes with 2 processes.

    python bench/paper/test_size_rho.py
"""

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]

from consensus.engines.ponas.exact import pin_kernels  # noqa: E402

pin_kernels()
import build_table as bt  # noqa: E402
import correlate as c  # noqa: E402

from consensus.engines.ponas.mnist1d import ChainData, generate  # noqa: E402
from consensus.engines.ponas.recipe import PRESETS  # noqa: E402
from consensus.engines.ponas.space import get_space  # noqa: E402
from consensus.engines.ponas.train import score_sequences, train_sequences  # noqa: E402

D = str(HERE / "correlation_mnist1d") + "/"
a = bt.read_table(Path(D + "nb201_mnist1d_devnet_e0.csv.gz"))
idx = bt.nested_sample(200)
top = c.top_cells(a, idx, 20, by="val")
data = bt.mnist1d_data(0)
SIZES = (5000, 10000, 20000)


def work(i: int) -> tuple[int, dict[tuple[str, int], int]]:
    pin_kernels()
    chain = ChainData(bytes.fromhex(data.genesis), data.train_size, data.validation_size, 5000, 1)
    task = chain.task(0)
    g = get_space("nb201-1d").encode(i)
    m, _ = train_sequences(g, PRESETS["mnist1d-devnet"], 0, *chain.train(0))
    out: dict[tuple[str, int], int] = {}
    for key in ("paper-test", "paper-test-2"):
        for n in SIZES:
            x, y = generate(bt.test_key(key), n, task, bt.TEST_DOMAIN)
            out[(key, n)] = score_sequences(m, x, y)
    return i, out

if __name__ == "__main__":
    t = time.time()
    with ProcessPoolExecutor(2) as ex:
        res = dict(ex.map(work, top))
    # sanity: key A at 5,000 is the table's test set
    same = sum(res[i][("paper-test", 5000)] == a[i].test_correct for i in top)
    rows = {}
    for n in SIZES:
        xa = [res[i][("paper-test", n)] for i in top]
        xb = [res[i][("paper-test-2", n)] for i in top]
        rows[n] = c.spearman(xa, xb)
        print(f"test size {n:>6}: rho(key A, key B) over the top 20 = {rows[n]:.4f}; scores A {min(xa)/n*100:.2f}..{max(xa)/n*100:.2f}%")
    print(f"key A at 5,000 equals the table's test column for {same}/20 cells; {time.time()-t:.0f} s")
    out = HERE / "correlation_mnist1d_test_sizes.json"
    out.write_text(json.dumps({"genesis": data.genesis, "recipe": "mnist1d-devnet", "top": top,
                               "rho_by_test_size": rows, "same_as_table": same}, indent=1) + "\n")
    print(f"wrote {out}")
