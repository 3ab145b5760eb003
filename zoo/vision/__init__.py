"""Images: decoding, ImageNet preprocessing and labels, building Keras applications,
BatchNorm-folded inference, the runtimes that run them forward (TensorFlow, OpenVINO),
export, and the image classifier.

Importing this package is cheap (no numpy, Pillow or TensorFlow): the server's settings
read the limit below without paying for the decoders.
"""

DEFAULT_MAX_PIXELS = 64_000_000  # about 8000 x 8000; beyond that refuse (decompression bombs)
