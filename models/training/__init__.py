"""Training a crisis or reply model: data, fitting, calibration, operating points, cards. No scorer imports this.

What a scorer loads lives one level up (`models.classifier`, `models.head`, `models.artifact`, the backends, the
backup lexicons); this package is what `vigil train`, `vigil model eval|export` and the measuring scripts
(`python -m models.training.kinds`, `...urgent_level`, `...response_safety_train`, `...multilingual_train`) use.
"""
