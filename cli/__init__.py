"""The composition root: command lines and experiment drivers.

They sit above both libraries and wire them together: ``eval``'s prompt sets and scorers go into
``npnet``'s collection (Alg. 1), training (Alg. 2) and the micro-world experiments. Nothing imports
``cli``; ``npnet`` and ``eval`` stay usable without it.
"""
