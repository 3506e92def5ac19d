"""Raw videos to training clips: decode, detect, track, crop, resize, encode to Parquet shards."""
