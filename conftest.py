"""Root pytest configuration: notebooks collected here run at the 'smoke' profile and train
(HIPCORE_TRAIN=1), whatever results are committed.

Notebook kernels inherit this environment. One OpenMP thread keeps the small smoke runs as
fast as two, and immune to the 10-100x slowdown two spinning threads suffer on a 2-core
machine when another process takes a core.
"""

import os

os.environ.setdefault("HIPCORE_PROFILE", "smoke")
os.environ.setdefault("HIPCORE_TRAIN", "1")        # nbval trains: it never reads committed results
os.environ.setdefault("OMP_NUM_THREADS", "1")
