"""The heads of the SSD family (the seed's ``ssds_map``), one module each, and their contract.

A head is an ``nn.Module`` built as

    Head(in_channels, layers, anchors, num_classes)
        in_channels  channels of the backbone maps it is given (``HeadConfig.out_indices``)
        layers       ``HeadConfig.layers`` (the head's extra layers, in the seed's terms)
        anchors      priors per position of each output level (from the ``PriorSpec``)
        num_classes  foreground classes; confidences have num_classes + 1 channels per prior,
                     channel 0 the background (every head, YOLO included, trains with
                     MultiBoxLoss as in the seed)

    forward(features) -> list of (loc [B, A_k·4, H_k, W_k], conf [B, A_k·(num_classes + 1), H_k, W_k])
        one pair per output level, finest first; channels ordered (prior, value), so that
        ``loc.permute(0, 2, 3, 1).reshape(B, -1, 4)`` lists priors in the order (y, x, prior)
        of ``make_priors``.

Its submodules carry the seed's scope names where it has them (``norm``, ``extras``, ``loc``,
``conf``, ``transforms``, ``pyramids``), which ``--trainable_scope`` / ``--resume_scope`` pick.
Each module also holds ``CONFIGS``: seed backbone name -> ``HeadConfig``.
"""
