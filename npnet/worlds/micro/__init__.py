"""The micro world: a tiny offline text-to-image world where every stage of NPNet runs on a CPU."""
