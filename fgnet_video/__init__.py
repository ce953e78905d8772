"""fgnet-video: facial action unit detection in video with FG-Net.

The public API, imported on first use (importing `fgnet_video` itself loads no torch):

    analyze_video      one recording -> AU table (+ sidecar, overlay)   analysis.recording
    analyze_inputs     a study: many recordings, resumable             study.run
    InferenceEngine    FG-Net scoring aligned faces on a device        inference.engine
    Prediction         an engine's scores (and heatmaps)               inference.engine
    VideoReader        decoded frames with timestamps                  media.video
    FacePipeline       detect, track, landmarks, align                 face.pipeline
    load_weights       a known name or a weights file -> loaded model  weights.store
    summarize          per-person AU summary of a table                reports.summary
    plot_table         a figure of a table's AU activity               reports.plot
    AnalyzeOptions     every option of an analysis                     options
"""

from fgnet_video.lazy import lazy_exports
from fgnet_video.version import __version__

EXPORTS = {
    "analyze_video": "analysis.recording",
    "analyze_inputs": "study.run",
    "InferenceEngine": "inference.engine",
    "Prediction": "inference.engine",
    "VideoReader": "media.video",
    "FacePipeline": "face.pipeline",
    "load_weights": "weights.store",
    "summarize": "reports.summary",
    "plot_table": "reports.plot",
    "AnalyzeOptions": "options",
}
__all__ = ["__version__"]
lazy_exports(globals(), EXPORTS)
