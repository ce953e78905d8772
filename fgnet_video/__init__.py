"""fgnet-video: facial action unit detection in video with FG-Net."""

__version__ = "0.1.0"
