# rules: model (being written)
