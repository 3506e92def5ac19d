"""File-level animation of real photos and videos: auto-crop on the subject, paste-back, detector choice."""
