"""SAMUeL: vocal-conditioned accompaniment by latent diffusion with soft alignment attention.

Book: intro (what the model does) and design (how the paper maps to the code).
"""
__version__ = "0.1.0"
