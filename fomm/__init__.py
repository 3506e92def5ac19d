"""fomm: the First Order Motion Model (Siarohin et al., NeurIPS 2019) in pure PyTorch, numpy and yaml, drop-in
with the original checkpoints; each concept is imported from its module (`fomm.animator.Animator`, ...)."""
