"""Video: safe decoding of sampled frames, shots, keyframes and pooled video-level values.

Nothing here imports pyspark: the job expands a video into its keyframes here, and the image
signals then run on the keyframes through the same runner as on photos (docs/design.md, Video).
"""
