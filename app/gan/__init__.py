"""StyleGAN2 for Noisescope.

networks    the generator (NVIDIA state-dict layout), style mixing, w interpolation, seeds
ops         FIR resampling, bias+activation, modulated convolution in plain PyTorch
pkl_reader  allow-list reader for NVIDIA network pickles; never runs code stored in them
convert     pickle -> generator.safetensors + config.json, and `load_generator` for serving
render      map / truncate / render, and CLIP-guided latent search
"""
