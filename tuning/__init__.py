"""Ray Tune sweeps over the training job: search spaces, ASHA, MLflow parent/child runs, best-config export."""
