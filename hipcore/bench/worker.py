"""`python -m hipcore.bench.worker '<job as JSON>'`: one measurement in a fresh process.

Prints one line, RESULT_MARK followed by the JSON of `timing.run_job(job)`.
"""

import json
import sys

from .timing import RESULT_MARK, run_job

if __name__ == "__main__":
    print(RESULT_MARK + json.dumps(run_job(json.loads(sys.argv[1]))), flush=True)
