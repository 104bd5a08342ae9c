"""samplegen: grow new instrument sounds from one-note samples with small latent models."""

__version__ = "0.1.0"
