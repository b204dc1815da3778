"""The noise prompt dataset (NPD): its on-disk format, collection (Alg. 1) and the official-data import."""
