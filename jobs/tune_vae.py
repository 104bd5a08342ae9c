"""Ray Jobs entry point for the chained VAE study, with the options of `samplegen tune vae`.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/tune_vae.py --outer /mnt/shared/studies/outer --name vae \
        --storage /mnt/shared/studies ...

On a cluster of several nodes the study folder must be one every node sees (cluster.yaml mounts
/mnt/shared on each): Ray Tune writes a trial's checkpoints on the node that runs it.

Inside a job, Ray sets RAY_ADDRESS, so the study runs on the job's cluster.
"""

from __future__ import annotations

import sys

from samplegen.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["tune", "vae", *sys.argv[1:]]))
