"""Evidence packs, PAdES signing and the court report."""
