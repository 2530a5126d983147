"""Transports: run one command on a target, or open a byte stream to it. They know nothing about jobs."""
