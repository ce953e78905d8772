"""fgnet-video: facial action unit detection in video with FG-Net."""

__version__ = "0.1.0"

__all__ = ["__version__", "analyze_video"]


def __getattr__(name: str):
    """Lazy access to the heavy public API (importing torch only when it is used)."""
    if name == "analyze_video":
        from fgnet_video.analyze import analyze_video

        return analyze_video
    raise AttributeError(f"module 'fgnet_video' has no attribute {name!r}")
