"""Super-resolution: a GAN upscaler (Real-ESRGAN's RRDBNet) and a diffusion upscaler (SD x4 upscaler layout)."""
