"""The micro flow world: the micro grammar and verifier with a flow-matching (SD3-class) generator."""
