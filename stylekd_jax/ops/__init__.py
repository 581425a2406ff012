"""Low-level image ops shared by the networks (NHWC, float32 or bfloat16)."""
