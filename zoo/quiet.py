"""Import TensorFlow without its C++ start-up chatter on the terminal.

TensorFlow's native logging writes banners (oneDNN, CUDA probing) to file
descriptor 2 before any Python setting can stop it; a CLI whose errors are meant to
be one line cannot have eight lines of noise above them. Commands that need a model
call `import_tensorflow()` first: stderr is parked in a temporary file during the
import and the device probe, and replayed only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow() -> None:
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here; get it over with
        except BaseException:
            os.dup2(saved, 2)
            parked.seek(0)
            sys.stderr.write(parked.read().decode("utf-8", errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
