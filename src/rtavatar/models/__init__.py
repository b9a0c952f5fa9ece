"""Neural networks: VAE, audio encoder, denoiser (DiT)."""
