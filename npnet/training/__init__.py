"""NPNet training (Alg. 2): the loop, its run state, resume."""
