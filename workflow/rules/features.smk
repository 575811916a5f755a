# rules: features (being written)
