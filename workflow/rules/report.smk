# rules: report (being written)
