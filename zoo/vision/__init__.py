"""Images: decoding, ImageNet preprocessing and labels, building Keras applications,
BatchNorm-folded inference, the runtimes that run them forward (TensorFlow, OpenVINO),
export, and the image classifier.

Importing this package is cheap (no numpy, Pillow or TensorFlow): the server's settings
read the limit below without paying for the decoders.
"""

DEFAULT_MAX_PIXELS = 64_000_000  # about 8000 x 8000; beyond that refuse (decompression bombs)
# Peak memory of decoding one image, per pixel of the full-size image (measured with
# ru_maxrss on 12-megapixel PNGs and JPEGs): Pillow keeps RGB and RGBA at 4 bytes a pixel and
# each conversion holds a second copy, so RGB takes 8 and an image whose alpha is composited
# on white takes 16. zoo.vision.images.ImageHeader.decode_bytes applies it per image.
DECODE_BYTES_PER_PIXEL = 8
MAX_DECODE_BYTES_PER_PIXEL = 16
