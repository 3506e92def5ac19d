"""Evaluation: video reconstruction, metric extractors, L1/AKD/MKR/AED, MLflow logging, reports, benchmark."""
