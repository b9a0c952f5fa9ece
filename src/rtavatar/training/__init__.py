"""Training stages (vae, teacher; syncnet/distill/eft to come) on one shared loop."""
