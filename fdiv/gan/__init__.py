"""GAN training on the fused f-divergence losses."""
