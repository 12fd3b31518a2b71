"""ipt-ray: instance-wise prompt tuning on frozen language models."""
__version__ = "0.1.0"
