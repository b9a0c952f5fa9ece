"""Does a teacher use its audio? Mouth-box x0 error of its prediction at high noise, with and
without the audio (dropped to the null tokens), on fixed training windows. Near t = 1 only the
audio can say what the mouth does; if the two errors match, the model ignores audio and its
samples cannot be lip-synced, whatever else they get right. With --expert (a `train syncnet`
run) it also reads the mouth opening of each predicted x0 with the expert's aperture tower and
reports its correlation with the opening it reads from the true frames, over the frames
labelled `speak` (the state label alone already says that listening and idle mouths are
mostly closed): `aperture_r`, and `motion_r` on the openings minus each window's mean, which
leaves the frame-to-frame opening and closing (lip sync) and removes what identity and the
clip's speaking style predict. (A training
diagnostic, not a quality metric.)

    python scripts/audio_reliance.py --checkpoint runs/teacher-tiny [--data data/synth90] [--expert runs/syncnet-tiny]
"""

from __future__ import annotations

import argparse
import json

import torch

from rtavatar.checkpoints import load_weights, resolve_checkpoint
from rtavatar.data.behavior import STATES
from rtavatar.data.dataset import Dataset
from rtavatar.diffusion import add_noise, v_denoiser
from rtavatar.models.dit import Conditioning
from rtavatar.training.common import step_generator
from rtavatar.training.data import LatentClips
from rtavatar.training.distill import load_teacher_run
from rtavatar.training.teacher import from_model_space, load_codec, model_batch, region_weight


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="data/synth90")
    p.add_argument("--windows", type=int, default=32)
    p.add_argument("--expert", default="", help="a sync expert run: also report the aperture correlation")
    p.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA (which lags ~1/(1-decay) steps)")
    a = p.parse_args()
    ck = resolve_checkpoint(a.checkpoint)
    cfg, net = load_teacher_run(ck)
    if a.raw:
        load_weights(net, ck)
    codec = load_codec(cfg.vae_checkpoint)
    clips = LatentClips(Dataset(a.data, split="train"), codec, ck.parents[1] / "latent_cache")
    b = model_batch(cfg, clips.sample(step_generator(7, 0), a.windows, 6, cfg.net.audio_margin))
    x0 = b["latents"]
    wt = region_weight(cfg, *x0.shape[-2:])
    mouth = wt > wt.min()
    out: dict[str, object] = {"checkpoint": str(ck), "weights": "raw" if a.raw else "ema", "copy_reference": float(x0.pow(2)[..., mouth].mean())}
    aperture = None
    if a.expert:
        from rtavatar.evaluation.sync import load_expert
        from rtavatar.training.teacher import MouthAperture

        aperture = MouthAperture(codec, load_expert(a.expert).net)
        raw_ref = b["ref"] / cfg.latent_scale
        with torch.no_grad():
            speaking = b["state"] == STATES.index("speak")
            truth = aperture(from_model_space(cfg, x0, raw_ref))
    denoise = v_denoiser(lambda x, t, c: net.eval()(x, t, c, wav=b["audio"]))
    for t in (0.8, 0.9, 0.99):
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
        tt = torch.full(x0.shape[:2], t)
        for name, keep in (("audio", True), ("no_audio", False)):
            cond = Conditioning(state=b["state"], controls=b["controls"], ref_latent=b["ref"],
                                keep_audio=torch.full((len(x0),), keep))
            with torch.no_grad():
                x0_hat = denoise(add_noise(x0, eps, tt), tt, cond)
                out[f"t{t}_{name}"] = round(float((x0_hat - x0).pow(2)[..., mouth].mean()), 4)
                if aperture is not None:
                    opening = aperture(from_model_space(cfg, x0_hat, raw_ref))
                    for key, centre in (("aperture_r", False), ("motion_r", True)):
                        pair = torch.stack([opening, truth])
                        if centre:
                            pair = pair - pair.mean(-1, keepdim=True)
                        r = torch.corrcoef(pair[:, speaking])[0, 1]
                        out[f"t{t}_{name}_{key}"] = round(float(r), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
