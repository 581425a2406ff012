"""Convert PyTorch StyleGAN checkpoints (NVlabs .pkl, rosinality/StyleKD/CAGAN .pt) without torch."""
