"""The search layer of ipt-ray; ``spaces/`` holds the shipped search spaces (package data)."""
