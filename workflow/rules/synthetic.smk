# rules: synthetic (being written)
