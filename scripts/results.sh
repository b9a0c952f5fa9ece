#!/usr/bin/env bash
# The docs/RESULTS.md pipeline on the tiny synthetic setup (CPU). One shared distillation
# (runs/student-base), then three branches of equal length off it: distill only (the control),
# + the avatar discriminator on the teacher backbone, + the discriminator on the sync-expert
# backbone; EFT (300, then 600 steps) on the better-scoring adversarial student; then two
# `rtavatar eval` runs (the two tables of docs/RESULTS.md) on a held-out set (new identities
# and sentences). Every stage resumes, so the script
# can be re-run after an interruption. Needs runs/teacher-tiny (the audio-driven teacher),
# runs/syncnet-tiny, runs/vae-tiny and data/synth90 (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
RT=.venv/bin/rtavatar
DATA=${DATA:-data/synth90}
HELDOUT=${HELDOUT:-data/heldout12}
EFT_FROM=${EFT_FROM:-runs/student-adv-expert}  # the better-scoring adversarial branch (docs/RESULTS.md)
# Encode the training clips once into the dataset (each run would otherwise cache its own copy).
.venv/bin/python -c "import sys; from pathlib import Path; from rtavatar.data.prepare import cache_latents; cache_latents(Path(sys.argv[1]), 'runs/vae-tiny')" "$DATA"
$RT synth-data --out "$HELDOUT" --clips 12 --seed 1 --seconds 6-10 --test-fraction 1 --quiet
$RT train distill --config configs/distill-tiny.yaml --data "$DATA" --out runs/student-base --resume
$RT train distill --config configs/distill-tiny.yaml --init-from runs/student-base --steps 300 --data "$DATA" --out runs/student --resume
$RT train distill --config configs/distill-adv-tiny.yaml --data "$DATA" --out runs/student-adv --resume
$RT train distill --config configs/distill-adv-expert-tiny.yaml --data "$DATA" --out runs/student-adv-expert --resume
# EFT: 300 steps (kept as runs/student-eft-300: the run goes on and prunes old checkpoints), then on to 600.
$RT train eft --config configs/eft-tiny.yaml --steps 300 --student "$EFT_FROM" --data "$DATA" --out runs/student-eft --resume
[ -d runs/student-eft-300 ] || cp -r runs/student-eft runs/student-eft-300
$RT train eft --config configs/eft-tiny.yaml --student "$EFT_FROM" --data "$DATA" --out runs/student-eft --resume
# 4 s per clip: the 20-step teacher runs at ~1.7 fps on CPU-2. The first table, then the second (EFT 600).
$RT eval --checkpoint runs/teacher-tiny --checkpoint runs/student-base:1 --checkpoint runs/student:1,2,4 \
         --checkpoint runs/student-adv:1 --checkpoint runs/student-adv-expert:1 --checkpoint runs/student-eft-300:1,2,4 \
         --expert runs/syncnet-tiny --data "$HELDOUT" --seconds 4 --out runs/results.json
$RT eval --checkpoint runs/teacher-tiny --checkpoint runs/student-adv-expert:1 --checkpoint runs/student-eft-300:1 \
         --checkpoint runs/student-eft:1,4 --expert runs/syncnet-tiny --data "$HELDOUT" --seconds 4 --out runs/results_eft600.json
