"""Training FOMM on Ray Train: frame-pair data (Ray Data), the DDP worker loop, checkpoints and resume."""
