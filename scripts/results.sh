#!/usr/bin/env bash
# The docs/RESULTS.md pipeline on the tiny synthetic setup (CPU): distill, distill + the
# avatar discriminator (teacher and sync-expert backbones), EFT, then one `rtavatar eval`
# run over all systems. Every stage resumes, so the script can be re-run after an interruption. Needs runs/teacher-tiny (the
# teacher to distil: today the audio-driven one is runs/teacher-tiny-s, so link it there),
# runs/syncnet-tiny and data/synth90 (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
RT=.venv/bin/rtavatar
DATA=${DATA:-data/synth90}
$RT train distill --config configs/distill-tiny.yaml --data "$DATA" --out runs/student --resume
$RT train distill --config configs/distill-adv-tiny.yaml --data "$DATA" --out runs/student-adv --resume
$RT train distill --config configs/distill-adv-expert-tiny.yaml --data "$DATA" --out runs/student-adv-expert --resume
$RT train eft --config configs/eft-tiny.yaml --data "$DATA" --out runs/student-eft --resume
$RT eval --checkpoint runs/teacher-tiny --checkpoint runs/student:1 --checkpoint runs/student-adv:1 --checkpoint runs/student-adv-expert:1 \
         --checkpoint runs/student-eft:1,2,4 --expert runs/syncnet-tiny --data "$DATA" --out runs/results.json
