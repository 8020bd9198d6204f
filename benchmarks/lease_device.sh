#!/bin/bash
# The wrapper the borrowed-GPU sessions run on the device machine, from the repository root:
#
#   bash benchmarks/lease_device.sh WINDOW_SECONDS COMMIT [--parallel N] --runs NAME:SEED ...
#
# Expects .lease/data (MNIST/raw, USPS; linked as ../shared/data when that is absent) and .lease/site (omegaconf, which the device image
# lacks) carried beside the tree, and $OUT (the device tool's folder of files to bring back).
# Records name COMMIT (MTLDA_SOURCE_COMMIT): the copy's own .git may be an older commit.
# Starts CUDA MPS when it can (13 processes then ran as fast as one), runs
# benchmarks.lease_queue on configs/suites/digits_tllib.yaml, and packs into $OUT the records
# and partial curves (records.tgz), TensorBoard logs (tb.tgz) and the last checkpoint of each
# run the window stopped, in pieces under the tool's 16 MiB per file (stopped.tgz.part-*), so
# they can be resumed on any device with `mtlda run` (join with cat, untar into the output).
set -u
WINDOW=$1; COMMIT=$2; shift 2
export PYTHONPATH=$PWD/.lease/site:$PWD PYTHONUNBUFFERED=1 MTLDA_SOURCE_COMMIT=$COMMIT
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824
T0=$(date +%s)
{ nvidia-smi; nproc; python3 -c "import torch,sys;print(torch.__version__, torch.cuda.get_device_name(0), sys.version)"; } > $OUT/machine.txt 2>&1
MPS=off
if command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog; mkdir -p /tmp/mps /tmp/mpslog
  nvidia-cuda-mps-control -d 2>/dev/null  # already running on a warm machine: keep that one
  if timeout 45 python3 -c "import torch; torch.ones(4, device='cuda').sum().item()"; then MPS=on
  else echo quit | timeout 10 nvidia-cuda-mps-control; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; fi
fi
echo "MPS=$MPS setup $(( $(date +%s) - T0 )) s" | tee -a $OUT/machine.txt
# The data root is part of a run's configuration hash: give it the path the CPU machines use,
# so a run stopped here resumes there (and its record's hash equals theirs).
DATA=../shared/data
if [ ! -e $DATA ]; then mkdir -p ../shared && ln -s "$PWD/.lease/data" $DATA; fi
LEFT=$(( WINDOW - ($(date +%s) - T0) ))
timeout $(( LEFT + 40 )) python3 -m benchmarks.lease_queue configs/suites/digits_tllib.yaml --window $LEFT \
  --output runs/gpu --data-root $DATA --device "${LEASE_DEVICE:-cuda}" "$@" 2>&1 | tee $OUT/queue.log
tar czf $OUT/records.tgz --exclude=checkpoints --exclude=tb runs/gpu
tar czf $OUT/tb.tgz $(find runs/gpu -type d -name tb -not -path "*_calibration*") 2>/dev/null
STOPPED=$(find runs/gpu -name partial_history.json -not -path "*_calibration*" -printf '%h/checkpoints/last.pt\n')
if [ -n "$STOPPED" ]; then tar czf - $STOPPED | split -b 15m - $OUT/stopped.tgz.part-; fi
echo "total $(( $(date +%s) - T0 )) s"
