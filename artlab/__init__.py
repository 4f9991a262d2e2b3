"""ArtLab: deep learning looks at art. Style, subject, reconstruction, heat maps and similar works."""

__version__ = "0.1.0"
