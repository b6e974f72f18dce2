"""What a factor means, and how sure we are: readable rules over token features, fitted
on training sentences and scored on held-out ones, the same for a dictionary and its
random controls. A leaf: numpy and scipy only, no SQL, no model."""
