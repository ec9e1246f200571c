"""Shared pytest setup for the Dice Loss Explorer test suite."""
import os
import sys

# Quiet TensorFlow's C++ logging before anything imports tensorflow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Make the repository root importable (``import explorer``) however pytest is invoked.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)
