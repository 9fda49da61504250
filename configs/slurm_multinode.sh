#!/usr/bin/env bash
# SLURM: N nodes x 8 GPUs, DDP through accelerate, resumable. Submit with `sbatch configs/slurm_multinode.sh`;
# submit it again after a node died or the time ran out: --resume auto continues from the newest whole
# checkpoint in the (shared) output folder.
#SBATCH --job-name=banglaocr
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one launcher per node; accelerate starts the 8 processes
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=12:00:00
#SBATCH --signal=B:TERM@300          # SIGTERM 5 minutes before the end: banglaocr saves and exits 143
set -euo pipefail

OUTPUT=${OUTPUT:-/shared/runs/banglaocr-$SLURM_JOB_NAME}   # on a file system every node sees
MASTER=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
GPUS_PER_NODE=8

srun --kill-on-bad-exit=1 bash -c "accelerate launch \
    --multi_gpu --num_machines $SLURM_NNODES --machine_rank \$SLURM_NODEID \
    --num_processes $((SLURM_NNODES * GPUS_PER_NODE)) \
    --main_process_ip $MASTER --main_process_port 29500 --rdzv_backend static --mixed_precision bf16 \
    -m banglaocr train --recipe recipes/kaggle_t4x2.yaml train.precision=bf16 \
    --output-dir $OUTPUT --resume auto"
