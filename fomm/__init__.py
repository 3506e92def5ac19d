"""fomm: the First Order Motion Model (Siarohin et al., NeurIPS 2019), drop-in with the original checkpoints.

Pure PyTorch, numpy and yaml; each concept is imported from its module (`fomm.animator.Animator`,
`fomm.config.schema.load_config`, `fomm.checkpoint.load_checkpoint`, ...).
"""
