"""natfwd: forward ports on home routers."""

__version__ = "0.1.0"
