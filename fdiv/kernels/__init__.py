"""Fast evaluation of the f-divergence losses: fused Triton kernels and the torch reference."""
