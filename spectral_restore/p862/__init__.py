"""A differentiable model of ITU-T P.862 (PESQ) in ``keras.ops``: the model
(``model``: ``mos``), P.862's utterance alignment on the host (``align``), the
Recommendation's band tables (``tables``) and its MOS-LQO mappings (``mapping``).
:class:`~spectral_restore.losses.PESQLoss` is the loss built on it."""
