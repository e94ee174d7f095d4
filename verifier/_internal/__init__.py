"""Implementation details of the verifier; import the public names from ``verifier``."""
