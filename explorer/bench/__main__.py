"""``python -m explorer.bench``: the loss benchmark (:mod:`explorer.bench.losses`)."""

import os

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

    from explorer.bench.losses import main

    main()
