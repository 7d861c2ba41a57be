"""probsft.sim: the synthetic capability continuum (paper §2 and §6 predictions).

    probsft simulate --preset crossover            # one named experiment -> CSV + config + figure
    probsft reproduce --only sim                   # every preset + the report section

Modules: ``config`` (frozen SimConfig), ``continuum`` (the prior-strength dial and synthetic data),
``dynamics`` (batched theory-mode flow and learning-mode training), ``sweep`` (vectorised,
resumable sweeps), ``escape`` (the −p escape-time experiment), ``phase`` (the theory's E* boundary),
``analysis`` (winners, best α, first-order agreement), ``presets`` (one per figure), ``report``
(the main job's sim step).
"""
