"""The paper's analyses: output change against depth (amplification) and
layer dependency (beta_{i,j}), computed on real models and data."""
