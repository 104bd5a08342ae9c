"""Ray Jobs entry point for an outer study, with the options of `samplegen tune outer`.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/tune_outer.py --data DATASET --name NAME --storage s3://bucket/studies ...

Inside a job, Ray sets RAY_ADDRESS, so the study runs on the job's cluster.
"""

from __future__ import annotations

import sys

from samplegen.cli.tune import main_outer

if __name__ == "__main__":
    sys.exit(main_outer(sys.argv[1:]))
