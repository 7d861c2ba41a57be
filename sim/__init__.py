"""probsft.sim: the synthetic capability continuum (paper §2 and §6 predictions).

    probsft simulate --list                        # the registered experiments
    probsft simulate --preset crossover            # one experiment -> CSV + config + figures
    probsft reproduce --only sim [--quick]         # every experiment + the report section

Modules: ``config`` (frozen SimConfig), ``continuum`` (the prior-strength dial, mixed-difficulty
batches and synthetic data), ``dynamics`` (batched theory-mode flow and learning-mode training),
``sweep`` (vectorised, resumable sweeps), ``escape`` (the −p escape-time experiment), ``phase``
(the theory's E* boundary), ``grid`` (the sensitivity grid), ``analysis`` (winners, best α,
first-order agreement), ``verdicts`` (paired verdicts and the prior's contribution),
``experiments`` (the registry: one entry per experiment, its configs, figures and verdicts).
"""
