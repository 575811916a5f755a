"""The matching model: O-MaMa's head and descriptors, training batches, training, and the existence head."""
