"""Image models: decoding, preprocessing, and the runtimes that run them forward."""
