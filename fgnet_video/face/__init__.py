"""Faces in frames: detection, tracking, 68 landmarks and FFHQ alignment (dlib, OpenCV, PIL)."""
