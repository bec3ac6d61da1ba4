"""medmat: medical image matting — soft segmentation of ambiguous lesions, with uncertainty.

Subpackages mirror the architecture:

- ``medmat.data``       samples, safe readers, validation, phantoms, transforms, splits
- ``medmat.labels``     alpha-matte labels built from several annotators' masks
- ``medmat.classical``  trimap-based classical matting (closed-form, KNN, LBDM, IF, Bayesian)
- ``medmat.metrics``    SAD / MSE / Grad / Conn (Deep Image Matting protocol), GED, Dice
- ``medmat.reporting``  tables and figures
- ``medmat.cli``        the ``medmat`` command
"""

__version__ = "0.1.0"
