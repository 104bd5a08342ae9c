"""Entry point for `ray job submit ... -- python jobs/pipeline.py --preset full --out DIR ...`.

Same options as `samplegen run`; inside a Ray job RAY_ADDRESS points at the cluster. On a cluster
of several nodes --out must be a folder every node sees (cluster.yaml mounts /mnt/shared on each):
the run's studies live in it, and Ray Tune writes a trial's checkpoints on the node that runs it.
"""

import sys

from samplegen.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
