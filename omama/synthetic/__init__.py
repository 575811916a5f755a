"""Deterministic synthetic Ego-Exo4D takes (the embedded default data) and synthetic photo pairs.

- :mod:`omama.synthetic.render`: a small vectorised ray caster of analytic solids;
- :mod:`omama.synthetic.scene`: a take's objects, motion, hands, head and cameras (:class:`Take`);
- :mod:`omama.synthetic.dataset`: the dataset writer in the Ego-Exo4D layout (``generate_dataset``);
- :mod:`omama.synthetic.photos`: photo pairs for a photos dataset (``write_photo_pairs``).
"""
