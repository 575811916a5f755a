"""Backbone features: the frozen networks (backbone kinds) and the per-take Zarr feature stores."""
