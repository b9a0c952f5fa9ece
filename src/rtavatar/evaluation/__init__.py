"""Evaluation: sync scores, mouth and motion metrics, Fréchet distance on our features."""
