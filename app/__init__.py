"""Noisescope: watch a prompt become an image, step by step, by diffusion and by GAN."""

__version__ = "0.1.0"
