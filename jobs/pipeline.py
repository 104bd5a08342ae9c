"""Entry point for `ray job submit ... -- python jobs/pipeline.py --preset full --out DIR ...`.

Same options as `samplegen run`; inside a Ray job RAY_ADDRESS points at the cluster.
"""

import sys

from samplegen.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
