"""SAMUeL: vocal-conditioned accompaniment by latent diffusion with soft alignment attention."""
__version__ = "0.1.0"
