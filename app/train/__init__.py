"""Building the training data, training the embedded CLIP, VAE and UNet, and exporting them to models/.

`python -m app.train.data build` makes the emoji set; `python -m app.train --help` lists the trainers.
"""
