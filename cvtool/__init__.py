"""cvtool: the classic computer-vision tasks, trained and run from one command line."""

__version__ = "0.1.0"
