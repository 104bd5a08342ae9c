"""Entry point for `ray job submit ... -- python jobs/pipeline.py --preset full --out DIR ...`.

Same options as `samplegen run`; inside a Ray job RAY_ADDRESS points at the cluster. On a cluster
of several nodes the run's studies need storage every node reaches, since Ray Tune writes a
trial's checkpoints on the node that runs it: --out on a shared folder (cluster.yaml mounts
/mnt/shared on each node), or --storage s3://... for the studies alone.
"""

import sys

from samplegen.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
